"""Tiny ITEm: CPU tests and the demo (S=64, P=8, L=32, 4 layers, width 256).

Run it:
  python -m item_jax.cli.train --config configs/tiny.py --workdir runs/tiny \
      --config.data.dir runs/demo/shards
Variants: `--config configs/tiny.py:runlocal` shrinks the batch and step count for a smoke run.
"""

from item_jax.configs import defaults


def get_config(arg=None):
    config = defaults.default_config()
    if arg == "runlocal":
        config.global_batch_size = 8
        config.total_steps = 20
        config.log_every_steps = 5
        config.checkpoint_every_steps = 10
    return config
