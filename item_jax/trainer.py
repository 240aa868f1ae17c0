"""The trainer: `train_and_evaluate(config, workdir)`, read top to bottom.

Config checks, mesh, data, model and optimizer, sharded state, the compiled step,
checkpoints, evaluation hooks and the loop. Running it again on the same workdir resumes
from the latest complete checkpoint, at the same data position. SIGTERM (a maintenance
event) saves the current step and stops. The command line is `item_jax/train.py`.
"""

import json
import math
import os
import signal
import time
from typing import Callable

import jax
import numpy as np
from absl import logging

from item_jax import checkpoint, config_check, sharding, train_step
from item_jax.data import convert, input_pipeline
from item_jax.metrics_logger import MetricsLogger
from item_jax.model import model_from_config

class NonFiniteLossError(FloatingPointError):
  """A step produced a non-finite loss or gradient norm."""


class _PreemptionFlag:
  """Set by SIGTERM; the loop saves and stops at the next step boundary."""

  def __init__(self):
    self.requested = False

  def install(self) -> None:
    def handler(signum, frame):  # pylint: disable=unused-argument
      logging.warning("SIGTERM received: saving a checkpoint and stopping.")
      self.requested = True
    try:
      signal.signal(signal.SIGTERM, handler)
    except ValueError:  # Not the main thread (e.g. called from a test worker thread).
      pass


def _host_metrics(device_metrics: dict) -> dict[str, float]:
  return {key: float(value) for key, value in jax.device_get(device_metrics).items()}


def _check_finite(step: int, device_metrics: dict) -> None:
  if float(device_metrics["finite"]) == 1.0:
    return
  metrics = _host_metrics(device_metrics)
  bad = [key for key, value in metrics.items() if key.endswith("_loss") and not math.isfinite(value)]
  if not math.isfinite(metrics.get("grad_norm", 0.0)):
    bad.append("grad_norm")
  raise NonFiniteLossError(
      f"Non-finite value at step {step} in {', '.join(bad) or 'loss'}: {metrics}. "
      "The last good checkpoint is kept; set config.stop_on_nonfinite=False to skip such steps.")


def flops_per_example(model_config) -> float:
  """Matmul FLOPs of one training example (forward + backward = 3x forward)."""
  width, mlp, layers = model_config.hidden_dim, model_config.mlp_dim, model_config.num_layers
  patches = (model_config.image_size // model_config.patch_size) ** 2
  tokens = model_config.max_text_len + patches
  per_layer = 2 * tokens * (4 * width * width + 2 * width * mlp) + 4 * tokens * tokens * width
  patch_embed = 2 * patches * (model_config.patch_size ** 2 * 3) * width
  return 3.0 * (layers * per_layer + patch_embed)


def train_and_evaluate(config, workdir: str, *, evaluate_fn: Callable | None = None,
                       stop_at_step: int | None = None) -> dict[str, float]:
  """Trains `config` in `workdir` (resuming if it holds checkpoints); returns last metrics.

  `evaluate_fn(params, step) -> dict`, if given, runs every `config.eval_every_steps` and at
  the end; its metrics are logged with the split name "validation". `stop_at_step` stops
  the run there as a preemption would (checkpoint, then return); a rerun continues.
  """
  # --- Config, mesh and data checks -------------------------------------------------
  config_check.check_config(config)
  mesh = sharding.make_mesh(config.mesh)
  config_check.check_config_against_mesh(config, mesh, jax.process_count())
  if not config.data.dir:
    raise config_check.ConfigError("config.data.dir: no data dir given (TFRecord shards from "
                                   "`python -m item_jax.convert`)")
  dataset_info = convert.load_dataset_info(config.data.dir)
  config_check.check_config_against_data(config, dataset_info)
  logging.info("Mesh %s over %d devices (%d processes); data %s: %s train examples",
               dict(mesh.shape), jax.device_count(), jax.process_count(), config.data.dir,
               dataset_info["splits"]["train"]["num_examples"])

  # --- Model, optimizer, sharded state -----------------------------------------------
  model = model_from_config(config.model)
  setup = train_step.build_train_setup(model, config, mesh)
  num_params = sum(int(np.prod(leaf.shape))
                   for leaf in jax.tree.leaves(setup.abstract_state["params"]))
  logging.info("Model: %.2fM parameters, sequence %d = %d text + %d patches", num_params / 1e6,
               model.max_text_len + model.num_patches, model.max_text_len, model.num_patches)

  checkpointer = checkpoint.Checkpointer(
      os.path.join(workdir, "checkpoints"), save_every_steps=config.checkpoint_every_steps,
      keep=config.keep_checkpoints)
  if checkpointer.latest_step() is not None:
    state, data_position = checkpointer.restore(setup.abstract_state)
    start_step = int(jax.device_get(state["step"]))
    if data_position.get("global_batch_size", config.global_batch_size) != config.global_batch_size:
      logging.warning("Global batch changed since the checkpoint; the data position is "
                      "approximate.")
    logging.info("Resuming from step %d", start_step)
  else:
    state = setup.init_state(jax.random.key(config.seed))
    start_step = 0
    if jax.process_index() == 0:
      os.makedirs(workdir, exist_ok=True)
      with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
        f.write(config.to_json_best_effort(indent=2))

  # --- The compiled step ---------------------------------------------------------------
  compile_start = time.time()
  step_fn = train_step.compile_train_step(setup, config)
  memory = step_fn.memory_analysis()
  logging.info("Step compiled in %.1fs. Memory per device: %s", time.time() - compile_start,
               memory_summary(memory))

  batches = input_pipeline.make_global_iterator(config, config.data.dir, mesh,
                                                setup.batch_sharding, start_step=start_step)
  logger = MetricsLogger(workdir, config.total_steps)
  preemption = _PreemptionFlag()
  preemption.install()
  flops = flops_per_example(config.model)

  def data_position(step):
    return {"next_batch": step, "global_batch_size": config.global_batch_size,
            "process_count": jax.process_count()}

  def run_evaluation(step):
    if evaluate_fn is not None:
      logger.prefix = "validation"
      logger.log(step, evaluate_fn(state["params"], step))
      logger.prefix = "train"

  # --- The loop ------------------------------------------------------------------------
  last_metrics: dict[str, float] = {}
  previous = None  # (step, device metrics) of the step before, read one step late.
  window_start, window_steps = time.time(), 0
  step = start_step
  try:
    while step < config.total_steps:
      state, device_metrics = step_fn(state, next(batches))
      step += 1
      window_steps += 1
      if config.stop_on_nonfinite and previous is not None:
        _check_finite(*previous)  # One step late, so the host never waits on the device.
      previous = (step, device_metrics)
      is_last = step == config.total_steps
      if stop_at_step is not None and step >= stop_at_step and not is_last:
        preemption.requested = True
      if step % config.log_every_steps == 0 or is_last:
        last_metrics = _host_metrics(device_metrics)
        if config.stop_on_nonfinite:
          _check_finite(step, device_metrics)
        elapsed = time.time() - window_start
        last_metrics.update(
            examples_per_s=window_steps * config.global_batch_size / elapsed,
            step_ms=1000.0 * elapsed / window_steps,
            eta_s=(config.total_steps - step) * elapsed / window_steps)
        last_metrics["tflops_per_device"] = (
            last_metrics["examples_per_s"] * flops / 1e12 / jax.device_count())
        logger.log(step, last_metrics)
        window_start, window_steps = time.time(), 0
      due = step % config.checkpoint_every_steps == 0 or is_last or preemption.requested
      if due:
        if config.stop_on_nonfinite:
          _check_finite(step, device_metrics)
        checkpointer.save(step, state, data_position(step), force=True)
      if config.eval_every_steps and step % config.eval_every_steps == 0 and not is_last:
        run_evaluation(step)
      if preemption.requested:
        checkpointer.wait()
        logging.warning("Stopped at step %d (preemption); rerun to resume.", step)
        break
    else:
      run_evaluation(step)
  finally:
    checkpointer.close()
    logger.close()
  last_metrics["step"] = step
  return last_metrics


def memory_summary(memory) -> str:
  if memory is None:
    return "unavailable"
  fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
            "alias_size_in_bytes")
  return ", ".join(f"{name.replace('_size_in_bytes', '')}={getattr(memory, name, 0) / 2**20:.1f}MiB"
                   for name in fields)
