"""Helpers for tests that run item_jax in child processes (multi-process, preemption)."""

import socket
import subprocess
import time


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
