"""Tests of the launch scripts: shellcheck, and the commands their dry runs would run."""

import os
import pathlib
import shlex
import shutil
import stat
import subprocess

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH_DIR = REPO_ROOT / "launch"
SCRIPTS = ("setup_env.sh", "local.sh", "tpu_pod.sh", "gpu_slurm.sbatch", "gpu_bench.sh")
TRAIN_ARGS = [
    "--config",
    "configs/tiny.py:runlocal",
    "--workdir",
    "runs/pod test",
    "--config.total_steps=7",
]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SLURM_") and key not in ("DRY_RUN", "PROCS_PER")
    }
    env.update(extra)
    return env


def _run(script, *args, env=None, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(script), *args],
        cwd=cwd,
        env=env or _clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _commands(completed: subprocess.CompletedProcess) -> list[list[str]]:
    """Splits a dry run's output into argument lists, one per printed command."""
    assert completed.returncode == 0, completed.stderr
    return [shlex.split(line) for line in completed.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck_is_clean(script):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    completed = subprocess.run(
        ["shellcheck", "-x", str(LAUNCH_DIR / script)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_usage(script):
    completed = _run(LAUNCH_DIR / script, "-h")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("Usage:")


# local.sh


@pytest.mark.parametrize(
    "subcommand, expected",
    [
        (
            ["demo", "--steps=3"],
            [
                ".venv/bin/python",
                "-m",
                "item_jax.cli.main_job",
                "--workdir",
                "runs/demo",
                "--steps=3",
            ],
        ),
        (
            ["test", "-k", "shard and not slow"],
            [
                ".venv/bin/python",
                "-m",
                "pytest",
                "tests",
                "-q",
                "-n",
                "2",
                "--dist",
                "loadfile",
                "-k",
                "shard and not slow",
            ],
        ),
        (["train", *TRAIN_ARGS], [".venv/bin/python", "-m", "item_jax.cli.train", *TRAIN_ARGS]),
    ],
)
def test_local_dry_run_prints_setup_then_command(subcommand, expected):
    for args in (["--dry-run", *subcommand], [subcommand[0], "--dry-run", *subcommand[1:]]):
        setup, *lint, command = _commands(_run(LAUNCH_DIR / "local.sh", *args))
        assert setup[:2] == ["bash", "launch/setup_env.sh"]
        assert command == expected
        # The tests run only on a tree that the formatter and the linter pass.
        expected_lint = [
            [".venv/bin/ruff", "format", "--check", "--quiet", "."],
            [".venv/bin/ruff", "check", "--quiet", "."],
        ]
        assert lint == (expected_lint if subcommand[0] == "test" else [])


def test_local_rejects_an_unknown_command():
    completed = _run(LAUNCH_DIR / "local.sh", "deploy")
    assert completed.returncode == 2
    assert "unknown command 'deploy'" in completed.stderr
    assert "Usage:" in completed.stderr


def _write_executable(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize("setup_status, python_status, expected", [(0, 7, 7), (3, 0, 3)])
def test_local_propagates_exit_codes(tmp_path, setup_status, python_status, expected):
    _write_executable(tmp_path / "launch" / "local.sh", (LAUNCH_DIR / "local.sh").read_text())
    _write_executable(tmp_path / "launch" / "common.sh", (LAUNCH_DIR / "common.sh").read_text())
    _write_executable(tmp_path / "launch" / "setup_env.sh", f"exit {setup_status}\n")
    _write_executable(
        tmp_path / ".venv" / "bin" / "python",
        f"#!/bin/sh\necho ran > python_ran\nexit {python_status}\n",
    )
    completed = _run(tmp_path / "launch" / "local.sh", "train", "--config", "c", cwd="/")
    assert completed.returncode == expected, completed.stderr
    assert (tmp_path / "python_ran").exists() == (setup_status == 0)


def test_local_runs_jax_on_the_cpu_of_a_machine_without_an_accelerator(tmp_path):
    _write_executable(tmp_path / "launch" / "local.sh", (LAUNCH_DIR / "local.sh").read_text())
    _write_executable(tmp_path / "launch" / "common.sh", (LAUNCH_DIR / "common.sh").read_text())
    _write_executable(tmp_path / "launch" / "setup_env.sh", "exit 0\n")
    _write_executable(
        tmp_path / ".venv" / "bin" / "python",
        '#!/bin/sh\necho "${JAX_PLATFORMS:-unset}" > jax_platforms\n',
    )
    seen = lambda **env: (
        _run(
            tmp_path / "launch" / "local.sh",
            "demo",
            env={k: v for k, v in _clean_env(**env).items() if env or k != "JAX_PLATFORMS"},
            cwd="/",
        ),
        (tmp_path / "jax_platforms").read_text().strip(),
    )[1]
    accelerators = [
        path
        for pattern in ("nvidia[0-9]*", "accel[0-9]*", "vfio/[0-9]*")
        for path in pathlib.Path("/dev").glob(pattern)
    ]
    assert seen() == ("unset" if accelerators else "cpu")
    # A platform the user asked for is kept.
    assert seen(JAX_PLATFORMS="cuda") == "cuda"


# setup_env.sh


def test_setup_env_creates_venv_once_and_reinstalls_only_on_change(tmp_path):
    _write_executable(
        tmp_path / "launch" / "setup_env.sh", (LAUNCH_DIR / "setup_env.sh").read_text()
    )
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# nothing to install\n")
    env = _clean_env(PYTHON=shutil.which("python3") or "python3")
    script = tmp_path / "launch" / "setup_env.sh"

    first = _run(script, "--no-apt", env=env, cwd="/")
    assert first.returncode == 0, first.stderr
    assert "creating" in first.stderr and "installing Python packages" in first.stderr
    assert (tmp_path / ".venv" / "bin" / "python").exists()

    second = _run(script, "--no-apt", env=env, cwd="/")
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stderr and "creating" not in second.stderr

    requirements.write_text("# nothing to install, changed\n")
    third = _run(script, "--no-apt", env=env, cwd="/")
    assert third.returncode == 0, third.stderr
    assert "installing Python packages" in third.stderr and "creating" not in third.stderr


def test_setup_env_dry_run_adds_the_accelerator_wheels():
    completed = _run(
        LAUNCH_DIR / "setup_env.sh",
        "--dry-run",
        "--no-apt",
        "--accelerator",
        "tpu",
        env=_clean_env(),
    )
    assert completed.returncode == 0, completed.stderr
    assert "jax[tpu]==" in completed.stdout


def test_setup_env_rejects_an_unknown_accelerator():
    completed = _run(LAUNCH_DIR / "setup_env.sh", "--accelerator", "fpga")
    assert completed.returncode == 2
    assert "fpga" in completed.stderr


# tpu_pod.sh


def _tpu_dry_run(*options: str) -> list[list[str]]:
    return _commands(
        _run(
            LAUNCH_DIR / "tpu_pod.sh",
            "--dry-run",
            "--name",
            "item-pod",
            "--zone",
            "us-central2-b",
            *options,
            "--",
            *TRAIN_ARGS,
        )
    )


def _flag_value(command: list[str], flag: str) -> str:
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(flag + "=")]
    assert len(values) == 1, f"{flag} not once in {command}"
    return values[0]


def test_tpu_pod_dry_run_creates_ships_sets_up_and_trains_on_all_workers():
    commands = _tpu_dry_run("--accelerator_type", "v4-32", "--project", "my-project")
    assert all(command[0] in ("gcloud", "git") for command in commands)
    gcloud = [command for command in commands if command[0] == "gcloud"]
    assert all(_flag_value(command, "--zone") == "us-central2-b" for command in gcloud)
    assert all(_flag_value(command, "--project") == "my-project" for command in gcloud)

    describe, create, archive, scp, setup, train = commands
    assert describe[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "describe"]
    assert create[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "item-pod"]
    assert _flag_value(create, "--accelerator-type") == "v4-32"
    assert _flag_value(create, "--version") == "tpu-ubuntu2204-base"
    assert archive[:4] == ["git", "-C", str(REPO_ROOT), "archive"]
    tarball = _flag_value(archive, "--output")
    assert scp[4] == "scp" and scp[5] == tarball and "--worker=all" in scp
    assert "--worker=all" in setup and "launch/setup_env.sh --accelerator tpu" in (
        _flag_value(setup, "--command")
    )

    assert train[4] == "ssh" and "--worker=all" in train
    worker_command = _flag_value(train, "--command")
    expected_train = shlex.join([".venv/bin/python", "-m", "item_jax.cli.train", *TRAIN_ARGS])
    assert expected_train in worker_command
    assert "tee logs/train.log" in worker_command
    assert "--coordinator_address" not in worker_command
    parsed = subprocess.run(
        ["bash", "-n", "-c", worker_command], capture_output=True, text=True, timeout=30
    )
    assert parsed.returncode == 0, parsed.stderr


def test_tpu_pod_queued_resource_with_teardown():
    commands = _tpu_dry_run("--accelerator_type", "v5p-64", "--queued", "--teardown")
    create = commands[1]
    assert create[:6] == ["gcloud", "compute", "tpus", "queued-resources", "create", "item-pod"]
    assert _flag_value(create, "--accelerator-type") == "v5p-64"
    assert _flag_value(create, "--runtime-version") == "v2-alpha-tpuv5"
    assert _flag_value(create, "--node-id") == "item-pod"
    assert commands[2][3:5] == ["queued-resources", "describe"]
    assert commands[-1][:6] == [
        "gcloud",
        "compute",
        "tpus",
        "queued-resources",
        "delete",
        "item-pod",
    ]
    assert "--force" in commands[-1]


def test_tpu_pod_teardown_deletes_the_vm_last_and_only_when_asked():
    assert not any("delete" in command for command in _tpu_dry_run())
    last = _tpu_dry_run("--teardown")[-1]
    assert last[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "item-pod"]


def test_tpu_pod_copies_data_to_every_worker(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    scp = [
        command
        for command in _tpu_dry_run("--copy_data", str(shards))
        if command[4] == "scp" and "--recurse" in command
    ]
    assert len(scp) == 1
    assert str(shards) in scp[0] and "item-pod:item_jax/data/" in scp[0]
    assert "--worker=all" in scp[0]


def test_tpu_pod_requires_train_arguments():
    completed = _run(LAUNCH_DIR / "tpu_pod.sh", "--dry-run", "--name", "a", "--zone", "z")
    assert completed.returncode == 2
    assert "no train arguments" in completed.stderr


# gpu_slurm.sbatch


def _slurm_dry_run(**env: str) -> list[list[str]]:
    return _commands(
        _run(LAUNCH_DIR / "gpu_slurm.sbatch", "--dry-run", *TRAIN_ARGS, env=_clean_env(**env))
    )


def _srun(commands: list[list[str]]) -> list[str]:
    sruns = [command for command in commands if command[0] == "srun"]
    assert len(sruns) == 1, commands
    return sruns[0]


def test_slurm_dry_run_starts_one_process_per_gpu():
    commands = _slurm_dry_run(
        SLURM_JOB_NUM_NODES="2",
        SLURM_GPUS_PER_NODE="h100:4",
        SLURM_JOB_NODELIST="gpu[007-008]",
        COORDINATOR_PORT="1234",
    )
    assert ["bash", "launch/setup_env.sh", "--accelerator", "gpu"] in commands
    srun = _srun(commands)
    assert _flag_value(srun, "--ntasks") == "8"
    assert _flag_value(srun, "--ntasks-per-node") == "4"
    assert _flag_value(srun, "--nodes") == "2"
    module = srun.index("item_jax.cli.train")
    assert (
        srun[module - 1] == "-m" and srun[module + 1 : module + 1 + len(TRAIN_ARGS)] == TRAIN_ARGS
    )
    assert srun[srun.index("--coordinator_address") + 1] == "gpu007:1234"
    assert srun[srun.index("--num_processes") + 1] == "8"


def test_slurm_dry_run_one_process_per_node_drives_all_gpus():
    commands = _slurm_dry_run(PROCS_PER="node", SLURM_JOB_NUM_NODES="3", SLURM_GPUS_PER_NODE="8")
    srun = _srun(commands)
    assert _flag_value(srun, "--ntasks") == "3"
    assert _flag_value(srun, "--ntasks-per-node") == "1"
    assert srun[srun.index("--num_processes") + 1] == "3"
    assert ["export", "JAX_LOCAL_DEVICE_IDS=0,1,2,3,4,5,6,7"] in commands


def test_slurm_dry_run_via_environment_variable():
    completed = _run(LAUNCH_DIR / "gpu_slurm.sbatch", *TRAIN_ARGS, env=_clean_env(DRY_RUN="1"))
    assert _flag_value(_srun(_commands(completed)), "--ntasks") == "16"


def test_slurm_refuses_to_run_outside_a_job():
    completed = _run(LAUNCH_DIR / "gpu_slurm.sbatch", *TRAIN_ARGS)
    assert completed.returncode == 2
    assert "not inside a SLURM job" in completed.stderr


# gpu_bench.sh


def test_gpu_bench_dry_run_installs_cuda_jax_then_times_both_attentions_and_the_input():
    commands = _commands(
        _run(LAUNCH_DIR / "gpu_bench.sh", "--dry-run", "--steps", "7", "--batch", "64")
    )
    assert commands[0] == ["bash", "launch/setup_env.sh", "--accelerator", "gpu", "--no-apt"]
    train = [
        ".venv/bin/python",
        "-m",
        "item_jax.cli.bench",
        "train",
        "--config",
        "configs/base.py",
        "--steps",
        "7",
        "--config.global_batch_size=64",
        "--config.objectives=itm,mlm,mim,gmlm,gmim",
    ]
    assert commands[1] == train
    assert commands[2] == train + ["--config.model.attention_implementation=cudnn"]
    assert commands[3] == [
        ".venv/bin/python",
        "-m",
        "item_jax.cli.bench",
        "input",
        "--config",
        "configs/base.py",
        "--batches",
        "100",
    ]
    assert len(commands) == 4
