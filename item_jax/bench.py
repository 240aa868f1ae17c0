"""Benchmarks that print one JSON line each.

  python -m item_jax.bench train --config configs/tiny.py --steps 20
  python -m item_jax.bench input --config configs/base.py [--data_dir DIR] [--batches 50] \
      [--train_examples_per_s 2000]

`train` times the compiled step on device-resident random batches; `input` times the host
tf.data pipeline (read, parse, decode, resize, normalise, batch).
"""

import json

from absl import app, flags
from ml_collections import config_flags

from item_jax import logging_setup

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=False)
_STEPS = flags.DEFINE_integer("steps", 20, "Timed train steps.")
_BATCHES = flags.DEFINE_integer("batches", 50, "Timed input batches.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Shards to read (input); default: synthetic.")
_TRAIN_RATE = flags.DEFINE_float(
    "train_examples_per_s", None,
    "input: the training step's examples/s per host, reported next to the pipeline's rate.")

COMMANDS = ("train", "input")


def main(argv):
  logging_setup.quiet_library_logs()
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f"usage: python -m item_jax.bench {{{'|'.join(COMMANDS)}}} "
                         "--config CONFIG [flags]")
  if _CONFIG.value is None:
    raise app.UsageError("--config is required")
  if argv[1] == "train":
    from item_jax.benchmarks import train_throughput  # pylint: disable=g-import-not-at-top
    result = train_throughput.benchmark_train(_CONFIG.value, steps=_STEPS.value)
  else:
    from item_jax.benchmarks import input_throughput  # pylint: disable=g-import-not-at-top
    result = input_throughput.benchmark_input(_CONFIG.value, data_dir=_DATA_DIR.value,
                                              num_batches=_BATCHES.value,
                                              train_examples_per_s=_TRAIN_RATE.value)
  print(json.dumps(result), flush=True)


def run():
  """Console-script entry point."""
  app.run(main)


if __name__ == "__main__":
  run()
