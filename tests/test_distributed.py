"""Tests of item_jax.distributed: two real CPU processes join into one 8-device run.

Each scenario starts two Python processes with 4 host devices each, as a two-host job
would, and checks the global device count and a cross-process reduction in both.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest
from subprocess_utils import free_port, wait_for

from item_jax import distributed

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEVICES_PER_PROCESS = 4
NUM_PROCESSES = 2
TIMEOUT_SECONDS = 120

# Runs in each spawned process. argv: JSON [positional arguments, keyword arguments] of
# initialize_distributed, then the file to write the result to (stdout is shared with the
# collectives library's own logging, which can split a printed line).
WORKER_CODE = """
import faulthandler, json, sys
# A hang shows its stacks in the report.
faulthandler.dump_traceback_later(TRACEBACK_AFTER_SECONDS, exit=False)
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from item_jax import distributed

arguments, keyword_arguments = json.loads(sys.argv[1])
distributed.initialize_distributed(*arguments, **keyword_arguments)
mesh = Mesh(np.array(jax.devices()), ("data",))
sharding = NamedSharding(mesh, PartitionSpec("data"))
# Global array [1, 2, ..., 8]: process p holds 4p+1 .. 4p+4.
first = jax.process_index() * jax.local_device_count() + 1
local_rows = np.arange(first, first + jax.local_device_count(), dtype=np.float32)
global_rows = jax.make_array_from_process_local_data(sharding, local_rows)
total = jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, PartitionSpec()))(global_rows)
distributed.sync_global_devices("after_sum")
result = {
    "process_index": jax.process_index(),
    "process_count": jax.process_count(),
    "device_count": jax.device_count(),
    "local_device_count": jax.local_device_count(),
    "is_main_process": distributed.is_main_process(),
    "global_shape": list(global_rows.shape),
    "total": float(np.asarray(total)),
}
with open(sys.argv[2], "w") as result_file:
  json.dump(result, result_file)
distributed.shutdown_distributed()
sys.stdout.flush()
# Skip the native teardown: on CPU, process 0 now and then hangs after Python has finished
# (faulthandler shows no Python frame), in the collectives' destructors; what this test
# checks is done and written by then.
import os
os._exit(0)
""".replace("TRACEBACK_AFTER_SECONDS", str(TIMEOUT_SECONDS - 30))


def _process_env(extra: dict[str, str]) -> dict[str, str]:
    """The parent's environment minus cluster variables, with 4 CPU devices per process."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLURM_", "OMPI_", "TPU_", "JAX_COORDINATOR", "JAX_LOCAL"))
    }
    env.update(
        XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES_PER_PROCESS}",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=str(REPO_ROOT),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    env.update(extra)
    return env


def _run_processes(
    work_dir, arguments_per_process, env_per_process, keyword_arguments=None
) -> list[dict]:
    """Starts one worker per entry, waits for all, returns their results by process index."""
    count = len(arguments_per_process)
    log_paths = [work_dir / f"worker{index}.log" for index in range(count)]
    result_paths = [work_dir / f"worker{index}.json" for index in range(count)]
    workers = []
    for arguments, env, log_path, result_path in zip(
        arguments_per_process, env_per_process, log_paths, result_paths
    ):
        command = [
            sys.executable,
            "-c",
            WORKER_CODE,
            json.dumps([arguments, keyword_arguments or {}]),
            str(result_path),
        ]
        with open(log_path, "w") as log:
            workers.append(
                subprocess.Popen(
                    command,
                    cwd=REPO_ROOT,
                    env=_process_env(env),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    wait_for(workers, TIMEOUT_SECONDS)
    report = "\n".join(
        f"--- worker {index} (exit {worker.returncode}):\n{path.read_text()}"
        for index, (worker, path) in enumerate(zip(workers, log_paths))
    )
    assert all(worker.returncode == 0 for worker in workers), report
    assert all(path.exists() for path in result_paths), f"a worker wrote no result:\n{report}"
    results = [json.loads(path.read_text()) for path in result_paths]
    return sorted(results, key=lambda result: result["process_index"])


def _assert_joined(results: list[dict]) -> None:
    total_devices = NUM_PROCESSES * DEVICES_PER_PROCESS
    assert [result["process_index"] for result in results] == list(range(NUM_PROCESSES))
    assert [result["is_main_process"] for result in results] == [True, False]
    for result in results:
        assert result["process_count"] == NUM_PROCESSES
        assert result["device_count"] == total_devices
        assert result["local_device_count"] == DEVICES_PER_PROCESS
        assert result["global_shape"] == [total_devices]
        assert result["total"] == total_devices * (total_devices + 1) / 2


def _fake_slurm_env(process_id: int, port: int | None = None) -> dict[str, str]:
    env = {
        "SLURM_JOB_ID": "4242",
        "SLURM_STEP_NODELIST": "127.0.0.1",
        "SLURM_NTASKS": str(NUM_PROCESSES),
        "SLURM_PROCID": str(process_id),
        "SLURM_LOCALID": str(process_id),
    }
    if port is not None:
        env["JAX_COORDINATOR_PORT"] = str(port)
    return env


def test_explicit_flags_join_two_processes(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    results = _run_processes(
        tmp_path,
        [[address, NUM_PROCESSES, process_id] for process_id in range(NUM_PROCESSES)],
        [{}] * NUM_PROCESSES,
    )
    _assert_joined(results)


def test_local_device_count_sets_the_host_devices(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    results = _run_processes(
        tmp_path,
        [[address, NUM_PROCESSES, process_id] for process_id in range(NUM_PROCESSES)],
        [{"XLA_FLAGS": ""}] * NUM_PROCESSES,
        keyword_arguments={"local_device_count": DEVICES_PER_PROCESS},
    )
    _assert_joined(results)


def test_slurm_task_takes_its_process_id_from_the_environment(tmp_path):
    # What launch/gpu_slurm.sbatch does: coordinator and count as flags, id from SLURM_PROCID.
    address = f"127.0.0.1:{free_port()}"
    results = _run_processes(
        tmp_path,
        [[address, NUM_PROCESSES, None]] * NUM_PROCESSES,
        [_fake_slurm_env(process_id) for process_id in range(NUM_PROCESSES)],
    )
    _assert_joined(results)


def test_slurm_environment_alone_is_enough(tmp_path):
    port = free_port()
    results = _run_processes(
        tmp_path,
        [[None, None, None]] * NUM_PROCESSES,
        [_fake_slurm_env(process_id, port) for process_id in range(NUM_PROCESSES)],
    )
    _assert_joined(results)


def test_single_process_without_cluster_does_nothing():
    code = (
        "import jax; from item_jax import distributed; distributed.initialize_distributed();"
        "print('RESULT', jax.distributed.is_initialized(), jax.process_count(),"
        " distributed.is_main_process())"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=_process_env({}),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
    )
    assert completed.returncode == 0, completed.stderr
    assert "RESULT False 1 True" in completed.stdout


@pytest.mark.parametrize("tasks, expected", [("2", "SlurmCluster"), ("1", None)])
def test_detect_cluster_needs_more_than_one_slurm_task(monkeypatch, tasks, expected):
    for name, value in _fake_slurm_env(0).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLURM_NTASKS", tasks)
    assert distributed.detect_cluster() == expected


def test_detect_cluster_finds_nothing_on_a_plain_machine(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("SLURM_", "OMPI_", "TPU_")):
            monkeypatch.delenv(name)
    assert distributed.detect_cluster() is None


def test_partial_flags_without_cluster_fail_clearly(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("SLURM_", "OMPI_", "TPU_")):
            monkeypatch.delenv(name)
    with pytest.raises(ValueError, match="--process_id"):
        distributed.initialize_distributed(num_processes=2)
