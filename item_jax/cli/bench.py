"""Benchmarks that print one JSON line each.

  python -m item_jax.cli.bench train --config tiny.py --steps 20
  python -m item_jax.cli.bench input --config base.py [--data_dir DIR] [--batches 50] \
      [--train_examples_per_s 2000]
  python -m item_jax.cli.bench memorise --config demo.py --data_dir runs/demo/shards \
      [--examples 16] [--steps 300]

`train` times the compiled step on device-resident random batches
(`item_jax/benchmarks/train_throughput.py`); `input` times the host tf.data pipeline (read,
parse, decode, resize, normalise, batch; `benchmarks/input_throughput.py`); `memorise`
trains on one fixed batch of real listings and reports whether every objective learns it
(`benchmarks/memorisation.py`).
"""

import json

from absl import app, flags

from item_jax import configs
from item_jax.cli import common

COMMANDS = ("train", "input", "memorise")
MEMORISE_DEFAULT_STEPS = 300


def define_flags():
  configs.define_config_flag(lock_config=False)
  flags.DEFINE_integer("steps", 20, "Timed train steps.")
  flags.DEFINE_integer("batches", 50, "Timed input batches.")
  flags.DEFINE_integer("warmup_batches", 5, "input: batches read before timing.")
  flags.DEFINE_string("data_dir", None, "Shards to read (input); default: synthetic.")
  flags.DEFINE_integer("examples", 16, "memorise: listings in the fixed batch.")
  flags.DEFINE_float(
      "train_examples_per_s", None,
      "input: the training step's examples/s per host, reported next to the pipeline's rate.")


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f"usage: python -m item_jax.cli.bench {{{'|'.join(COMMANDS)}}} "
                         "--config CONFIG [flags]")
  values = common.start(argv[:1], "config")
  config = values.config
  if argv[1] == "train":
    from item_jax.benchmarks import train_throughput  # pylint: disable=g-import-not-at-top
    result = train_throughput.benchmark_train(config, steps=values.steps)
  elif argv[1] == "memorise":
    from item_jax.benchmarks import memorisation  # pylint: disable=g-import-not-at-top
    if not values.data_dir:
      raise app.UsageError("memorise needs --data_dir (converted shards)")
    steps = values.steps if values["steps"].present else MEMORISE_DEFAULT_STEPS
    batch = memorisation.first_listings(config, values.data_dir, values.examples)
    result = memorisation.memorise(config, batch, steps=steps)
    result["failures"] = memorisation.check_memorised(result)
  else:
    from item_jax.benchmarks import input_throughput  # pylint: disable=g-import-not-at-top
    result = input_throughput.benchmark_input(config, data_dir=values.data_dir,
                                              num_batches=values.batches,
                                              warmup_batches=values.warmup_batches,
                                              train_examples_per_s=values.train_examples_per_s)
  print(json.dumps(result), flush=True)


def run():
  common.run(define_flags, main)


if __name__ == "__main__":
  run()
