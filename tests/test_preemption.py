"""Surviving interruptions: SIGTERM saves and stops, kill -9 resumes exactly, NaNs stop or skip.

`python -m item_jax.cli.train` runs as a subprocess on the embedded catalog and is signalled
once metrics.jsonl shows it training; the reruns happen in this process. A resumed run must
end with the same parameters, bit for bit, as an unbroken run of the same length.
"""

import signal
import time

import jax
import numpy as np
import pytest
from conftest import small_config
from test_multihost_training import (
    LOSS_KEYS,
    PROCESS_TIMEOUT_SECONDS,
    process_report,
    restore_params,
    start_training,
    train_records,
    wait_for,
    write_config_file,
)

from item_jax import checkpoint, train_loop
from item_jax.data import input_pipeline

KILL_SEED = 20240611


def _complete_checkpoints(workdir) -> list[int]:
    directory = workdir / "checkpoints"
    if not directory.exists():
        return []
    return sorted(int(path.name) for path in directory.iterdir() if path.name.isdigit())


def _wait_for_logged_steps(
    process, log_path, workdir, count: int, *, with_checkpoint: bool = False
) -> None:
    """Waits until metrics.jsonl shows `count` steps (and a checkpoint is complete)."""
    deadline = time.monotonic() + PROCESS_TIMEOUT_SECONDS
    while len(train_records(workdir)) < count or (
        with_checkpoint and not _complete_checkpoints(workdir)
    ):
        assert process.poll() is None, process_report([process], [log_path])
        assert time.monotonic() < deadline, process_report([process], [log_path])
        time.sleep(0.01)


def _stop(*processes) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def _latest_step(workdir):
    checkpointer = checkpoint.Checkpointer(str(workdir / "checkpoints"), save_every_steps=1, keep=3)
    try:
        return checkpointer.latest_step()
    finally:
        checkpointer.close()


@pytest.mark.slow
@pytest.mark.faults
def test_sigterm_saves_the_current_step_and_the_rerun_resumes(catalog_shards, tmp_path):
    config = small_config(
        total_steps=500, checkpoint_every_steps=400, **{"data.dir": catalog_shards}
    )
    workdir, log_path = tmp_path / "run", tmp_path / "run.log"
    process = start_training(write_config_file(tmp_path, config), workdir, log_path)
    try:
        _wait_for_logged_steps(process, log_path, workdir, count=3)
        process.send_signal(signal.SIGTERM)
        assert wait_for([process]) == [0], process_report([process], [log_path])
    finally:
        _stop(process)
    stopped_at = train_records(workdir)[-1]["step"]
    assert 3 <= stopped_at < 400
    assert _latest_step(workdir) == stopped_at  # Written in full before the process exited.
    assert f"Stopped at step {stopped_at} (preemption)" in log_path.read_text(encoding="utf-8")

    config.total_steps = stopped_at + 2
    metrics = train_loop.train_and_evaluate(config, str(workdir))
    assert metrics["step"] == stopped_at + 2
    steps = [record["step"] for record in train_records(workdir)]
    assert steps == list(range(1, stopped_at + 3))  # Continued, nothing repeated.


@pytest.mark.slow
@pytest.mark.faults
def test_kill_9_at_a_random_step_resumes_to_the_unbroken_result(catalog_shards, tmp_path):
    # The runs end with a validation pass; retrieval alone keeps it short (no reference rows).
    config = small_config(
        total_steps=16,
        checkpoint_every_steps=4,
        evaluators="retrieval",
        **{"data.dir": catalog_shards},
    )
    config_path = write_config_file(tmp_path, config)
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    log_paths = [tmp_path / "unbroken.log", tmp_path / "broken.log"]
    kill_after = int(np.random.default_rng(KILL_SEED).integers(5, 13))
    reference = start_training(config_path, unbroken, log_paths[0])  # Alongside, to save time.
    process = start_training(config_path, broken, log_paths[1])
    try:
        _wait_for_logged_steps(
            process, log_paths[1], broken, count=kill_after, with_checkpoint=True
        )
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert wait_for([reference]) == [0], process_report([reference], log_paths[:1])
    finally:
        _stop(process, reference)
    assert process.returncode == -signal.SIGKILL
    killed_records = train_records(broken)
    resume_step = _latest_step(broken)
    assert 0 < resume_step <= killed_records[-1]["step"] < config.total_steps

    # The resume runs in a process of its own, like the two above, so that all three compile
    # the step in the same kind of process with the same flags (conftest.py).
    resumed = start_training(config_path, broken, tmp_path / "resumed.log")
    try:
        assert wait_for([resumed]) == [0], process_report([resumed], [tmp_path / "resumed.log"])
    finally:
        _stop(resumed)
    expected = {record["step"]: record for record in train_records(unbroken)}
    resumed_records = train_records(broken)[len(killed_records) :]
    assert [record["step"] for record in resumed_records] == list(
        range(resume_step + 1, config.total_steps + 1)
    )
    for record in killed_records + resumed_records:  # Before the kill, and after the resume.
        for key in LOSS_KEYS:
            assert record[key] == expected[record["step"]][key], (record["step"], key)
    jax.tree.map(
        lambda want, got: np.testing.assert_array_equal(got, want),
        restore_params(config, unbroken),
        restore_params(config, broken),
    )


def _poison_step(monkeypatch, poisoned_step: int) -> None:
    """Makes the batch of step `poisoned_step` (1-based) carry NaN images."""
    make_iterator = input_pipeline.make_global_iterator

    class PoisonedIterator:
        def __init__(self, batches, start_step):
            self._batches, self._step = batches, start_step

        def __iter__(self):
            return self

        def __next__(self):
            batch, self._step = next(self._batches), self._step + 1
            if self._step == poisoned_step:
                image = batch["image"]
                batch["image"] = jax.device_put(
                    np.full(image.shape, np.nan, np.float32), image.sharding
                )
            return batch

        def close(self):
            self._batches.close()

    def poisoned(*args, start_step=0, **kwargs):
        return PoisonedIterator(make_iterator(*args, start_step=start_step, **kwargs), start_step)

    monkeypatch.setattr(input_pipeline, "make_global_iterator", poisoned)


@pytest.mark.faults
def test_nonfinite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(
    catalog_shards, tmp_path, monkeypatch
):
    _poison_step(monkeypatch, poisoned_step=5)
    config = small_config(total_steps=8, checkpoint_every_steps=2, **{"data.dir": catalog_shards})
    with pytest.raises(train_loop.NonFiniteLossError, match=r"at step 5 in .*mim_loss"):
        train_loop.train_and_evaluate(config, str(tmp_path))
    assert _latest_step(tmp_path) == 4
    params = restore_params(config, tmp_path)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))


@pytest.mark.slow
def test_nonfinite_step_is_skipped_counted_and_training_goes_on(
    catalog_shards, tmp_path, monkeypatch
):
    _poison_step(monkeypatch, poisoned_step=3)
    config = small_config(
        total_steps=5,
        checkpoint_every_steps=1,
        keep_checkpoints=5,
        stop_on_nonfinite=False,
        **{"data.dir": catalog_shards},
    )
    metrics = train_loop.train_and_evaluate(config, str(tmp_path))
    assert metrics["step"] == 5 and metrics["skipped_steps"] == 1
    records = {record["step"]: record for record in train_records(tmp_path)}
    assert np.isnan(records[3]["mim_loss"]) and records[3]["finite"] == 0.0
    assert [records[step]["skipped_steps"] for step in range(1, 6)] == [0, 0, 1, 1, 1]
    assert all(np.isfinite(records[step]["loss"]) for step in (4, 5))
    before, skipped, after = (restore_params(config, tmp_path, step) for step in (2, 3, 4))
    jax.tree.map(np.testing.assert_array_equal, skipped, before)  # Step 3 changed nothing.
    assert any(
        not np.array_equal(new, old)  # Step 4 trained again.
        for new, old in zip(jax.tree.leaves(after), jax.tree.leaves(skipped))
    )


@pytest.mark.parametrize(
    "configured, recorded, chosen",
    [
        (0, None, 1),  # A fresh run: one stream per process.
        (0, 4, 4),  # A resumed run keeps its checkpoint's data order.
        (0, 3, 1),  # ... unless 3 streams cannot split the batch of 16.
        (2, 4, 2),  # An explicit stream count wins.
    ],
)
def test_resumed_run_keeps_the_checkpoint_stream_count(configured, recorded, chosen):
    config = small_config(**{"data.num_streams": configured})
    assert input_pipeline.choose_num_streams(config, recorded) == chosen
