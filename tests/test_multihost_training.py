"""Two training processes x 4 CPU devices train (and validate) like one process x 8 devices.

The data order is a function of (seed, config.data.num_streams), not of the process count,
so `python -m item_jax.cli.train` run as a two-process job (gloo on 127.0.0.1) and an in-process
run with the same two streams see the same global batches and log the same losses. The
helpers here start `item_jax.cli.train` subprocesses for tests/test_preemption.py as well.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
import subprocess_utils
from conftest import small_config
from subprocess_utils import free_port

from item_jax import checkpoint, sharding, train_loop, train_step
from item_jax.evaluation import protocol
from item_jax.model import model_from_config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PROCESS_TIMEOUT_SECONDS = 150
LOSS_KEYS = ("loss", "itm_loss", "mlm_loss", "mim_loss", "gmlm_loss", "gmim_loss")

# The config file handed to `--config`: it loads the test's config from JSON next to it.
CONFIG_FILE_TEMPLATE = '''"""A test config: the values of {json_name}, written by the test."""
import json
import pathlib

import ml_collections


def get_config():
  text = (pathlib.Path(__file__).parent / "{json_name}").read_text()
  return ml_collections.ConfigDict(json.loads(text))
'''


def write_config_file(directory: pathlib.Path, config, name: str = "test_config") -> str:
    """Writes `config` where a `--config` flag in another process can load it."""
    (directory / f"{name}.json").write_text(config.to_json())
    path = directory / f"{name}.py"
    path.write_text(CONFIG_FILE_TEMPLATE.format(json_name=f"{name}.json"))
    return str(path)


def start_training(
    config_path: str,
    workdir: pathlib.Path,
    log_path: pathlib.Path,
    *,
    devices: int = 8,
    extra_args: tuple[str, ...] = (),
) -> subprocess.Popen:
    """Starts `python -m item_jax.cli.train` on `devices` CPU devices, output to `log_path`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLURM_", "OMPI_", "TPU_", "JAX_COORDINATOR", "JAX_LOCAL"))
    }
    env.update(
        XLA_FLAGS=subprocess_utils.child_xla_flags(devices),
        JAX_PLATFORMS="cpu",
        PYTHONPATH=str(REPO_ROOT),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    command = [
        sys.executable,
        "-m",
        "item_jax.cli.train",
        "--config",
        config_path,
        "--workdir",
        str(workdir),
        "--alsologtostderr",
        *extra_args,
    ]
    with open(log_path, "w", encoding="utf-8") as log:
        return subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )


def wait_for(
    processes: list[subprocess.Popen], timeout: float = PROCESS_TIMEOUT_SECONDS
) -> list[int]:
    return subprocess_utils.wait_for(processes, timeout)


def process_report(processes: list[subprocess.Popen], log_paths: list[pathlib.Path]) -> str:
    """The exit codes and the last lines of the logs, for an assertion message."""
    return "\n".join(
        f"--- process {index} (exit {process.returncode}):\n"
        + "\n".join(path.read_text(encoding="utf-8").splitlines()[-40:])
        for index, (process, path) in enumerate(zip(processes, log_paths))
    )


def run_to_completion(processes, log_paths, timeout: float = PROCESS_TIMEOUT_SECONDS) -> None:
    codes = wait_for(processes, timeout)
    assert codes == [0] * len(processes), process_report(processes, log_paths)


def train_records(workdir: pathlib.Path, split: str = "train") -> list[dict]:
    """The `split` lines of `metrics.jsonl`, in the order they were written."""
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [record for record in map(json.loads, lines) if record["split"] == split]


def restore_params(config, workdir: pathlib.Path, step: int | None = None):
    """The params of a workdir's checkpoint (default: latest) as host numpy arrays."""
    mesh = sharding.make_mesh(config.mesh)
    setup = train_step.build_train_setup(model_from_config(config.model), config, mesh)
    checkpointer = checkpoint.Checkpointer(
        str(workdir / "checkpoints"), save_every_steps=1, keep=config.keep_checkpoints
    )
    try:
        state, _ = checkpointer.restore(setup.abstract_state, step)
    finally:
        checkpointer.close()
    return jax.device_get(state["params"])


@pytest.mark.slow
def test_two_processes_train_like_one(catalog_shards, tmp_path):
    config = small_config(
        total_steps=5,
        checkpoint_every_steps=5,
        **{"data.dir": catalog_shards, "data.num_streams": 2},
    )
    one_process = tmp_path / "one_process"
    train_loop.train_and_evaluate(
        config,
        str(one_process),
        evaluate_fn=protocol.make_validation_evaluator(config, catalog_shards),
    )

    two_processes = tmp_path / "two_processes"
    config_path = write_config_file(tmp_path, config)
    coordinator = f"127.0.0.1:{free_port()}"
    log_paths = [tmp_path / f"process{index}.log" for index in range(2)]
    processes = [
        start_training(
            config_path,
            two_processes,
            log_paths[index],
            devices=4,
            extra_args=(
                "--coordinator_address",
                coordinator,
                "--num_processes",
                "2",
                "--process_id",
                str(index),
            ),
        )
        for index in range(2)
    ]
    run_to_completion(processes, log_paths)
    for log_path in log_paths:
        assert "over 8 devices (2 processes)" in log_path.read_text(encoding="utf-8")

    expected, actual = train_records(one_process), train_records(two_processes)
    assert [record["step"] for record in actual] == list(range(1, 6))  # Process 0 only.
    for want, got in zip(expected, actual, strict=True):
        for key in LOSS_KEYS:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=(got["step"], key))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        restore_params(config, two_processes),
        restore_params(config, one_process),
    )
    # Validation at the last step: each process embedded its devices' rows of every batch.
    expected, actual = (
        train_records(one_process, "validation"),
        train_records(two_processes, "validation"),
    )
    assert [record["step"] for record in actual] == [5], actual
    keys = [key for key in expected[0] if key.startswith(("retrieval", "references."))]
    assert "retrieval.recall@1" in keys and "references.title_tfidf.retrieval.recall@1" in keys
    for key in keys:
        np.testing.assert_allclose(actual[0][key], expected[0][key], atol=1e-6, err_msg=key)
