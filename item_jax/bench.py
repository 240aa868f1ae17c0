"""Benchmarks that print one JSON line each.

  python -m item_jax.bench train --config configs/tiny.py --steps 20
  python -m item_jax.bench input --config configs/base.py [--data_dir DIR] [--batches 50] \
      [--train_examples_per_s 2000]
  python -m item_jax.bench memorise --config configs/ablation.py --data_dir runs/demo/shards \
      [--examples 16] [--steps 300]

`train` times the compiled step on device-resident random batches; `input` times the host
tf.data pipeline (read, parse, decode, resize, normalise, batch); `memorise` trains on one
fixed batch of real listings and reports whether every objective learns it
(`item_jax/benchmarks/memorisation.py`).
"""

import json

from absl import app, flags
from ml_collections import config_flags

from item_jax import logging_setup

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=False)
_STEPS = flags.DEFINE_integer("steps", 20, "Timed train steps.")
_BATCHES = flags.DEFINE_integer("batches", 50, "Timed input batches.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Shards to read (input); default: synthetic.")
_EXAMPLES = flags.DEFINE_integer("examples", 16, "memorise: listings in the fixed batch.")
_TRAIN_RATE = flags.DEFINE_float(
    "train_examples_per_s", None,
    "input: the training step's examples/s per host, reported next to the pipeline's rate.")

COMMANDS = ("train", "input", "memorise")
MEMORISE_DEFAULT_STEPS = 300


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
  elif argv[1] == "memorise":
    from item_jax.benchmarks import memorisation  # pylint: disable=g-import-not-at-top
    if not _DATA_DIR.value:
      raise app.UsageError("memorise needs --data_dir (converted shards)")
    steps = _STEPS.value if flags.FLAGS["steps"].present else MEMORISE_DEFAULT_STEPS
    batch = memorisation.first_listings(_CONFIG.value, _DATA_DIR.value, _EXAMPLES.value)
    result = memorisation.memorise(_CONFIG.value, batch, steps=steps)
    result["failures"] = memorisation.check_memorised(result)
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
