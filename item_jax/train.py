"""Pretrains ITEm: `python -m item_jax.train --config configs/tiny.py --workdir DIR`.

Running it again on the same workdir resumes from the latest complete checkpoint, at the
same data position. SIGTERM (a maintenance event) saves the current step and exits.
Overrides: `--config.total_steps=200`, `--config.data.dir=DIR`, `--config.mesh.fsdp=2`.
Multi-host: `jax.distributed` is initialised from the TPU / SLURM environment, or from
`--coordinator_address --num_processes --process_id`. The loop is `item_jax/trainer.py`.
"""

import json

from absl import app, flags, logging
from ml_collections import config_flags

from item_jax import distributed, evaluate, logging_setup, trainer

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, logs and metrics go here.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


def main(argv):
  logging_setup.quiet_library_logs()
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _CONFIG.value is None or _WORKDIR.value is None:
    raise app.UsageError("--config and --workdir are required")
  distributed.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  config = _CONFIG.value
  evaluate_fn = None
  if config.data.dir:  # Every process takes part in validation (`item_jax/evaluate.py`).
    evaluate_fn = evaluate.make_validation_evaluator(config, config.data.dir)
  metrics = trainer.train_and_evaluate(config, _WORKDIR.value, evaluate_fn=evaluate_fn)
  logging.info("Done: %s", json.dumps(metrics))


def run():
  """Console-script entry point."""
  app.run(main)


if __name__ == "__main__":
  run()
