"""Checkpoints: a state saved on one mesh restores exactly onto another and trains on;
writes that never finished (a kill mid-save) are ignored and cleaned up.
"""

import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import small_config
from subprocess_utils import SMALL_CONFIG_FLAGS

from item_jax import checkpoint, profiling, sharding, train_loop, train_step
from item_jax.batch import random_batch
from item_jax.model import model_from_config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _setup(config):
    mesh = sharding.make_mesh(config.mesh)
    setup = train_step.build_train_setup(model_from_config(config.model), config, mesh)
    return setup, train_step.compile_train_step(setup, config)


def _step(setup, step_fn, state, seed):
    batch = jax.device_put(random_batch(setup.model, 16, seed=seed), setup.batch_sharding)
    return step_fn(state, batch)


def _checkpointer(directory, **options):
    return checkpoint.Checkpointer(str(directory), save_every_steps=1, keep=5, **options)


@pytest.mark.slow
def test_checkpoint_from_data_mesh_restores_onto_fsdp_tensor_mesh(tmp_path):
    data_config = small_config(**{"mesh.data": 8, "mesh.fsdp": 1, "mesh.tensor": 1})
    data_setup, data_step = _setup(data_config)
    state = data_setup.init_state(jax.random.key(0))
    for seed in range(2):
        state, _ = _step(data_setup, data_step, state, seed)
    checkpointer = _checkpointer(tmp_path)
    checkpointer.save(2, state, {"next_batch": 2}, force=True)
    checkpointer.close()
    saved = jax.device_get(state)
    _, data_metrics = _step(data_setup, data_step, state, seed=2)

    mesh_config = small_config(**{"mesh.data": 1, "mesh.fsdp": 2, "mesh.tensor": 4})
    mesh_setup, mesh_step = _setup(mesh_config)
    checkpointer = _checkpointer(tmp_path)
    restored, data_position = checkpointer.restore(mesh_setup.abstract_state)
    checkpointer.close()
    assert data_position == {"next_batch": 2}
    kernel = restored["params"]["block_0"]["mlp_in"]["kernel"]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    assert dict(kernel.sharding.mesh.shape) == {"data": 1, "fsdp": 2, "tensor": 4}
    assert len({shard.data.shape for shard in kernel.addressable_shards}) == 1
    assert kernel.addressable_shards[0].data.shape == (32, 32)  # [64, 128] over 2 x 4.
    jax.tree.map(
        lambda want, got: np.testing.assert_array_equal(got, want), saved, jax.device_get(restored)
    )

    state_memory = profiling.state_memory_summary(mesh_setup.abstract_state)
    per_device, total = map(
        float, re.search(r"params ([\d.]+)MiB of ([\d.]+)MiB", state_memory).groups()
    )
    assert 0 < per_device < total / 2, state_memory  # Sharded 2 x 4 ways, small leaves whole.
    assert re.match(
        r"peak [\d.]+MiB, arguments [\d.]+MiB, outputs .* temporaries",
        profiling.memory_summary(mesh_step.memory_analysis()),
    )

    continued, mesh_metrics = _step(mesh_setup, mesh_step, restored, seed=2)
    assert int(continued["step"]) == 3
    np.testing.assert_allclose(float(mesh_metrics["loss"]), float(data_metrics["loss"]), rtol=1e-5)
    assert float(mesh_metrics["finite"]) == 1.0


def _small_state(value: float):
    return {"step": np.array(value, np.int32), "weights": np.full((64, 64), value, np.float32)}


@pytest.mark.faults
def test_unfinished_writes_are_ignored_and_deleted(tmp_path):
    checkpointer = _checkpointer(tmp_path, async_save=False)
    for step in (2, 4):
        checkpointer.save(step, _small_state(step), {"next_batch": step}, force=True)
    checkpointer.close()
    # What a kill during the writes of steps 6 and 8 leaves: temporary directories only.
    shutil.copytree(tmp_path / "4", tmp_path / "6.orbax-checkpoint-tmp")
    shutil.copytree(tmp_path / "4" / "state", tmp_path / "8.orbax-checkpoint-tmp-1795240000")

    checkpointer = _checkpointer(tmp_path, async_save=False)
    assert checkpointer.all_steps() == [2, 4]
    assert checkpointer.latest_step() == 4
    restored, data_position = checkpointer.restore(_small_state(0))
    assert data_position == {"next_batch": 4}
    np.testing.assert_array_equal(restored["weights"], _small_state(4)["weights"])
    checkpointer.save(6, _small_state(6), {"next_batch": 6}, force=True)
    checkpointer.close()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["2", "4", "6"]


# Saves step 1 of a large state and waits; starts the asynchronous save of step 2, says so
# in the marker file, and hangs until it is killed.
_SAVER_CODE = """
import pathlib, sys, time
import numpy as np
from item_jax import checkpoint
directory, marker = sys.argv[1], pathlib.Path(sys.argv[2])
checkpointer = checkpoint.Checkpointer(directory, save_every_steps=1, keep=5)
def state(step):
  return {"step": np.array(step, np.int32), "weights": np.full((64, 1024, 1024), step, np.float32)}
checkpointer.save(1, state(1), {"next_batch": 1}, force=True)
checkpointer.wait()
checkpointer.save(2, state(2), {"next_batch": 2}, force=True)
marker.write_text("saving step 2")
time.sleep(600)
"""


@pytest.mark.faults
def test_kill_during_an_async_save_resumes_from_a_complete_checkpoint(tmp_path):
    directory, marker = tmp_path / "checkpoints", tmp_path / "marker"
    log_path = tmp_path / "saver.log"
    with open(log_path, "w", encoding="utf-8") as log:
        saver = subprocess.Popen(
            [sys.executable, "-c", _SAVER_CODE, str(directory), str(marker)],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        )
    try:
        deadline = time.monotonic() + 90
        while not marker.exists() and saver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), log_path.read_text(encoding="utf-8")
        saver.send_signal(signal.SIGKILL)
    finally:
        saver.kill()
        saver.wait()
    assert saver.returncode == -signal.SIGKILL

    interrupted = [
        path.name for path in directory.iterdir() if checkpoint.UNFINISHED_SUFFIX in path.name
    ]
    checkpointer = _checkpointer(directory)
    latest = checkpointer.latest_step()
    assert latest in (1, 2)
    # Either the kill caught step 2 mid-write (a temporary directory, not listed) or after it.
    assert (latest == 1) == any(name.startswith("2.") for name in interrupted), interrupted
    assert not checkpointer.unfinished_writes()  # Deleted at start-up.
    restored, data_position = checkpointer.restore(
        {"step": np.array(0, np.int32), "weights": np.zeros((64, 1024, 1024), np.float32)}
    )
    checkpointer.close()
    assert data_position == {"next_batch": latest}
    assert int(restored["step"]) == latest
    assert float(restored["weights"].min()) == float(restored["weights"].max()) == latest


@pytest.mark.slow
@pytest.mark.faults
def test_a_failed_save_stops_the_run_and_leaves_the_last_checkpoint_restorable(
    catalog_shards, tmp_path, monkeypatch
):
    import errno  # pylint: disable=g-import-not-at-top

    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

    original_save = ocp.CheckpointManager.save

    def disk_full_from_step_6(self, step, *args, **kwargs):
        if step >= 6:  # What the storage layer raises when the disk fills up.
            raise OSError(errno.ENOSPC, "No space left on device")
        return original_save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", disk_full_from_step_6)
    config = small_config(total_steps=10, checkpoint_every_steps=2, **{"data.dir": catalog_shards})
    workdir = str(tmp_path / "run")
    with pytest.raises(checkpoint.CheckpointWriteError) as raised:
        train_loop.train_and_evaluate(config, workdir)
    message = str(raised.value)
    assert "writing step 6" in message and "No space left on device" in message
    assert "last complete checkpoint, step 4, is intact" in message

    monkeypatch.setattr(ocp.CheckpointManager, "save", original_save)
    checkpointer = checkpoint.Checkpointer(
        os.path.join(workdir, "checkpoints"), save_every_steps=2, keep=3
    )
    assert checkpointer.latest_step() == 4
    setup = train_step.build_train_setup(
        model_from_config(config.model), config, sharding.make_mesh(config.mesh)
    )
    state, position = checkpointer.restore(setup.abstract_state)
    checkpointer.close()
    assert int(state["step"]) == 4 and position["next_batch"] == 4
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state["params"]))
    # With the disk writable again, the rerun resumes there and finishes.
    assert train_loop.train_and_evaluate(config, workdir)["step"] == 10


# The command line on a disk that cannot hold a checkpoint. Where no small filesystem can
# be mounted, the child makes Orbax's save raise what a full disk raises.
_TRAIN_ON_FULL_DISK = """
import errno, sys
if sys.argv[1] == "--simulate":
  import orbax.checkpoint as ocp
  def save(self, step, *args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")
  ocp.CheckpointManager.save = save
from item_jax.cli import train
sys.argv = ["train"] + sys.argv[2:]
train.run()
"""


def _mount_small_tmpfs(path) -> bool:
    path.mkdir(parents=True)
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return mounted.returncode == 0


@pytest.mark.slow
@pytest.mark.faults
def test_a_full_disk_ends_the_command_with_one_message_naming_the_failed_step(
    catalog_shards, tmp_path
):
    checkpoints = tmp_path / "run" / "checkpoints"
    mounted = _mount_small_tmpfs(checkpoints)
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                _TRAIN_ON_FULL_DISK,
                "--real" if mounted else "--simulate",
                "--config",
                "configs/tiny.py:runlocal",
                "--workdir",
                str(tmp_path / "run"),
                "--config.data.dir",
                catalog_shards,
                "--config.total_steps=6",
                "--config.checkpoint_every_steps=2",
                *SMALL_CONFIG_FLAGS,
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT)),
        )
    finally:
        if mounted:
            subprocess.run(["umount", str(checkpoints)], check=False)
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.rstrip().splitlines()[-1]
    # Step 2's write fails in the background; step 4's save meets it and names step 2.
    assert last.startswith("error: Checkpoint: writing step 2 to "), result.stderr[-3000:]
    assert "No space left on device" in last
    assert last.endswith("No complete checkpoint exists yet: a rerun starts from step 0.")
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "[train] step 2/6" in result.stderr
