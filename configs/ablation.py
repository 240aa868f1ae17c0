"""The ITEm ablation: four variants of one small model on the same data and step budget.

  (a) text_only:  MLM + GMLM, the model sees titles only.
  (b) image_only: MIM + GMIM, the model sees photos only.
  (c) no_global:  ITM + MLM + MIM (ITEm without its global objectives).
  (d) full:       ITM + MLM + MIM + GMLM + GMIM.

The model is the tiny config narrowed to 2 layers of width 128 (the tiny config's 64-px
images, 8-px patches and 32 text slots): a step costs about 0.16 s on 2 CPU cores instead of
0.7 s (`python -m item_jax.bench train --config configs/ablation.py`), so a CPU affords
1,000 steps per variant. Validation retrieval runs every 125 steps, so the table can show
when each variant's embedding was best, not only where it ended.

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
  config.model.update(num_layers=2, hidden_dim=128, num_heads=2, mlp_dim=512, embed_dim=128)
  config.total_steps = 1000
  config.optimizer.warmup_steps = 150
  config.log_every_steps = 50
  config.eval_every_steps = 125
  config.checkpoint_every_steps = 500
  return config
