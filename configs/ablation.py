"""The ITEm ablation: four variants of the tiny model on the same data and step budget.

  (a) text_only:  MLM + GMLM, the model sees titles only.
  (b) image_only: MIM + GMIM, the model sees photos only.
  (c) no_global:  ITM + MLM + MIM (ITEm without its global objectives).
  (d) full:       ITM + MLM + MIM + GMLM + GMIM.

All four, trained, evaluated and tabulated:
  python -m item_jax.ablation --data_dir runs/demo/shards --workdir runs/ablation
One of them:
  python -m item_jax.train --config configs/ablation.py:no_global --workdir runs/ablation/no_global \
      --config.data.dir runs/demo/shards
"""

from item_jax import config_defaults

VARIANTS = {
    "text_only": ("mlm,gmlm", "text"),
    "image_only": ("mim,gmim", "image"),
    "no_global": ("itm,mlm,mim", "text,image"),
    "full": ("itm,mlm,mim,gmlm,gmim", "text,image"),
}


def get_config(arg="full"):
  arg = arg or "full"
  if arg not in VARIANTS:
    raise ValueError(f"configs/ablation.py: unknown variant {arg!r}; one of {list(VARIANTS)}")
  config = config_defaults.default_config()
  config.objectives, config.modalities = VARIANTS[arg]
  config.total_steps = 400
  config.checkpoint_every_steps = 200
  return config
