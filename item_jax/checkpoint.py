"""Orbax checkpoints of the train state and the data position.

A checkpoint holds two items: `state` (params, optimizer state, step; restored onto the
shardings of the abstract state it is given, so a checkpoint saved on one mesh loads onto
another) and `data` (JSON: how many batches the input pipeline has served). Saves are
asynchronous. Orbax writes each checkpoint into `STEP.orbax-checkpoint-tmp*` and renames
it to `STEP` only once every item and every host has finished (on object stores, a
`commit_success.txt` marks it), so a run killed mid-write leaves only a temporary directory:
it is never listed, the next start deletes it (process 0, before anything else touches
the directory), and the run resumes from the latest complete checkpoint.

A write that fails (a full disk, a permission, a bucket that refuses) raises
`CheckpointWriteError` from `save`, `wait` or `close`, naming the step, the error and the
last complete checkpoint, which the failed write leaves untouched and restorable.

`load_workdir_config(workdir)` reads back the config a run wrote; restoring a run's
parameters for use after training is `train_step.restore_trained_params`, which builds the
abstract state this module restores onto.
"""

import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from item_jax import configs
from item_jax.errors import ItemJaxError

UNFINISHED_SUFFIX = ".orbax-checkpoint-tmp"


class CheckpointWriteError(ItemJaxError, RuntimeError):
    """A checkpoint could not be written; the earlier complete ones are intact."""


class Checkpointer:
    """Keeps the last `keep` checkpoints, saving every `save_every_steps` steps."""

    def __init__(
        self, directory: str, *, save_every_steps: int, keep: int, async_save: bool = True
    ):
        self.directory = epath.Path(directory).absolute()
        self._delete_unfinished_writes()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            save_interval_steps=save_every_steps,
            enable_async_checkpointing=async_save,
            create=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "data")
        )
        self._last_saved_step: int | None = None
        self._failed = False

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def unfinished_writes(self) -> list[epath.Path]:
        """Temporary directories of checkpoints whose write never finished."""
        if not self.directory.exists():
            return []
        return sorted(path for path in self.directory.iterdir() if UNFINISHED_SUFFIX in path.name)

    def _delete_unfinished_writes(self) -> None:
        """Process 0 deletes them, before any process lists or writes checkpoints."""
        if jax.process_index() == 0:
            unfinished = self.unfinished_writes()
            if unfinished:
                logging.warning(
                    "Checkpoint: deleting %d unfinished write(s) of an interrupted run: %s",
                    len(unfinished),
                    ", ".join(path.name for path in unfinished),
                )
            for path in unfinished:
                path.rmtree()
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("checkpoint: unfinished writes deleted")

    def save(self, step: int, state: Any, data_position: dict, *, force: bool = False) -> bool:
        """Saves if `step` is on the save interval (or `force`); returns whether it saved."""
        # The previous asynchronous write first, so that its failure names its own step (Orbax
        # would wait for it inside `save` and raise it as this step's).
        self.wait()
        try:
            saved = self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_position)
                ),
                force=force,
            )
        except Exception as error:  # pylint: disable=broad-except
            raise self._write_failed(step, error) from error
        if saved:
            self._last_saved_step = step
            logging.info("Checkpoint: saving step %d to %s", step, self.directory)
        return saved

    def complete_steps(self) -> list[int]:
        """Steps whose checkpoint was fully written, as Orbax reads them from storage now
        (unfinished writes and, on object stores, uncommitted steps are not listed)."""
        if not self.directory.exists():
            return []
        return sorted(self._manager.all_steps(read=True))

    def _pending_or(self, step: int) -> int:
        return self._last_saved_step if self._last_saved_step is not None else step

    def _write_failed(self, step: int, error: Exception) -> CheckpointWriteError:
        self._failed = True
        try:  # Let a write still in flight finish, so that the message names it if it did.
            self._manager.wait_until_finished()
        except Exception:  # pylint: disable=broad-except
            pass
        complete = [s for s in self.complete_steps() if s != step]
        if complete:
            last = (
                f"The last complete checkpoint, step {complete[-1]}, is intact: a rerun resumes "
                "from it once the directory can be written again (free space, permissions, "
                "bucket access)."
            )
        else:
            last = "No complete checkpoint exists yet: a rerun starts from step 0."
        return CheckpointWriteError(
            f"Checkpoint: writing step {step} to {self.directory} failed "
            f"({type(error).__name__}: {error}). Training stopped. {last}"
        )

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores (state, data_position) of `step` (default: latest) onto the given shardings."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"No checkpoint in {self.directory}")
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
            ),
        )
        logging.info("Checkpoint: restored step %d from %s", step, self.directory)
        return restored["state"], dict(restored["data"])

    def wait(self) -> None:
        """Blocks until any asynchronous save has been written; raises its failure (once)."""
        if self._failed:
            return
        try:
            self._manager.wait_until_finished()
        except Exception as error:  # pylint: disable=broad-except
            raise self._write_failed(self._pending_or(-1), error) from error

    def close(self) -> None:
        """Waits for the last save and releases the manager (after a failed write, only the
        latter: the failure has been raised already)."""
        try:
            self.wait()
        finally:
            try:
                self._manager.close()
            except Exception:  # pylint: disable=broad-except
                if not self._failed:
                    raise


def load_workdir_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a training run wrote to `workdir/config.json`, upgraded to the current
    fields (`item_jax.configs.upgrade_stored_config`)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: is {workdir} a training workdir "
            "(python -m item_jax.cli.train --workdir ...)?"
        )
    with open(path, encoding="utf-8") as f:
        return configs.upgrade_stored_config(json.load(f))
