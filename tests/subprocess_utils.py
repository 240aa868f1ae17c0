"""Helpers for tests that run item_jax in child processes (multi-process, preemption)."""

import os
import socket
import subprocess
import sys
import time

from conftest import FAST_COMPILE_XLA_FLAGS


def child_xla_flags(devices: int = 1) -> str:
    """XLA_FLAGS for a child process: `devices` CPU devices, with the suite's quick compiles."""
    count = f"--xla_force_host_platform_device_count={devices} " if devices > 1 else ""
    return count + FAST_COMPILE_XLA_FLAGS


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# `--config configs/tiny.py` shrunk to the test catalog's shards (as conftest.small_config).
SMALL_CONFIG_FLAGS = [
    "--config.model.image_size=32",
    "--config.model.patch_size=8",
    "--config.model.max_text_len=16",
    "--config.model.vocab_size=512",
    "--config.model.num_layers=2",
    "--config.model.hidden_dim=64",
    "--config.model.num_heads=4",
    "--config.model.mlp_dim=128",
    "--config.model.embed_dim=32",
    "--config.objectives=itm,mlm,mim,gmlm,gmim",
    "--config.global_batch_size=16",
    "--config.log_every_steps=1",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(processes: list[subprocess.Popen], timeout: float) -> list[int]:
    """Waits for every process (killing those past `timeout`); returns their exit codes."""
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [process.returncode for process in processes]


def run_cli(
    command: str, args: list[str], *, cwd: str = REPO_ROOT, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Runs `python -m item_jax.cli.COMMAND ARGS` on one CPU device; captures its output."""
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    env["XLA_FLAGS"] = child_xla_flags()
    return subprocess.run(
        [sys.executable, "-m", f"item_jax.cli.{command}", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def compile_tiny_beyond_memory(topology: str) -> subprocess.CompletedProcess:
    """`compile` of a one-layer tiny model at a global batch of 262,144: too big for any chip."""
    return run_cli(
        "compile",
        [
            "--config",
            "tiny.py",
            "--topology",
            topology,
            "--config.global_batch_size=262144",
            "--config.model.num_layers=1",
            "--config.model.hidden_dim=64",
            "--config.model.mlp_dim=128",
            "--config.model.vocab_size=512",
        ],
    )
