"""Orbax checkpoints of the train state and the data position.

A checkpoint holds two items: `state` (params, optimizer state, step; restored onto the
shardings of the abstract state it is given, so a checkpoint saved on one mesh loads onto
another) and `data` (JSON: how many batches the input pipeline has served). Saves are
asynchronous. Orbax writes each checkpoint into `STEP.orbax-checkpoint-tmp*` and renames
it to `STEP` only once every item and every host has finished (on object stores, a
`commit_success.txt` marks it), so a run killed mid-write leaves only a temporary directory:
it is never listed, the next start deletes it (process 0, before anything else touches
the directory), and the run resumes from the latest complete checkpoint.
"""

from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

UNFINISHED_SUFFIX = ".orbax-checkpoint-tmp"


class Checkpointer:
  """Keeps the last `keep` checkpoints, saving every `save_every_steps` steps."""

  def __init__(self, directory: str, *, save_every_steps: int, keep: int,
               async_save: bool = True):
    self.directory = epath.Path(directory).absolute()
    self._delete_unfinished_writes()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, save_interval_steps=save_every_steps,
        enable_async_checkpointing=async_save, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "data"))

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
        logging.warning("Checkpoint: deleting %d unfinished write(s) of an interrupted run: %s",
                        len(unfinished), ", ".join(path.name for path in unfinished))
      for path in unfinished:
        path.rmtree()
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("checkpoint: unfinished writes deleted")

  def save(self, step: int, state: Any, data_position: dict, *, force: bool = False) -> bool:
    """Saves if `step` is on the save interval (or `force`); returns whether it saved."""
    saved = self._manager.save(
        step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                      data=ocp.args.JsonSave(data_position)),
        force=force)
    if saved:
      logging.info("Checkpoint: saving step %d to %s", step, self.directory)
    return saved

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
    """Restores (state, data_position) of `step` (default: latest) onto the given shardings."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"No checkpoint in {self.directory}")
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                      data=ocp.args.JsonRestore()))
    logging.info("Checkpoint: restored step %d from %s", step, self.directory)
    return restored["state"], dict(restored["data"])

  def wait(self) -> None:
    """Blocks until any asynchronous save has been written."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

