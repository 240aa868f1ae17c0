"""Tiny ITEm: CPU tests and the demo (S=64, P=8, L=32, 4 layers, width 256).

Run it:
  python -m item_jax.cli.train --config configs/tiny.py --workdir runs/tiny \
      --config.data.dir runs/demo/shards
Variants: `--config configs/tiny.py:runlocal` shrinks the batch and step count for a smoke run.
"""

from item_jax import configs
from item_jax.configs import defaults

VARIANTS = {
    "runlocal": {
        "global_batch_size": 8,
        "total_steps": 20,
        "log_every_steps": 5,
        "checkpoint_every_steps": 10,
    },
}


def get_config(arg=None):
    return configs.apply_variants(defaults.default_config(), arg, VARIANTS, __file__)
