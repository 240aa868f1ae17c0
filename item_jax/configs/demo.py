"""The CPU-budget model: what the main job pretrains, and what the ablation varies.

The tiny config narrowed to 2 layers of width 128 (tiny's 64-px images, 8-px patches and 32
text slots), with the default recipe (`item_jax/configs/defaults.py`: the five ITEm
objectives plus the contrastive extension) at learning rate 2e-3 for 2,000 steps. Narrower
steps are cheaper than tiny's, so within the demo's CPU budget this model trains long enough
to end well above the untrained encoder, which tiny does not (the measurements:
docs/experiments.md, T01-T02 against D01).

Run it (the main job does, after writing the catalog's shards):
  python -m item_jax.cli.train --config configs/demo.py --workdir runs/demo/train \
      --config.data.dir runs/demo/shards
"""

from item_jax import configs
from item_jax.configs import defaults

VARIANTS = {}


def get_config(arg=None):
    config = defaults.default_config()
    config.model.update(num_layers=2, hidden_dim=128, num_heads=2, mlp_dim=512, embed_dim=128)
    config.optimizer.learning_rate = 2e-3
    config.optimizer.warmup_steps = 150
    config.total_steps = 2000
    config.log_every_steps = 50
    config.eval_every_steps = 250
    config.checkpoint_every_steps = 500
    return configs.apply_variants(config, arg, VARIANTS, __file__)
