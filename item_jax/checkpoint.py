"""Orbax checkpoints of the train state and the data position.

A checkpoint holds two items: `state` (params, optimizer state, step; restored onto the
shardings of the abstract state it is given, so a checkpoint saved on one mesh loads onto
another) and `data` (JSON: how many batches the input pipeline has served). Saves are
asynchronous; only finished checkpoints are listed, so a run killed mid-write resumes from
the latest complete one.
"""

from typing import Any

import orbax.checkpoint as ocp
from absl import logging
from etils import epath


class Checkpointer:
  """Keeps the last `keep` checkpoints, saving every `save_every_steps` steps."""

  def __init__(self, directory: str, *, save_every_steps: int, keep: int,
               async_save: bool = True):
    self.directory = epath.Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, save_interval_steps=save_every_steps,
        enable_async_checkpointing=async_save, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "data"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

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

