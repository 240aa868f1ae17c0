"""The ITEm ablation: variants of one small model on the same data and step budget.

Every variant uses the default recipe (`item_jax/configs/defaults.py`: the five ITEm
objectives plus the contrastive extension, docs/experiments.md) with pieces taken away:
  (a) text_only:        MLM + GMLM + contrastive (title view), the model sees titles only.
  (b) image_only:       MIM + GMIM + contrastive (image view), the model sees photos only.
      (Neither has the title <-> photo pair of views: each sees one modality.)
  (c) no_global:        ITM + MLM + MIM + contrastive (ITEm without its global objectives).
  (d) full:             ITM + MLM + MIM + GMLM + GMIM + contrastive (the default recipe).
  (e) item_paper:       the five ITEm objectives alone, exactly as the paper has them.
  (f) contrastive_only: the contrastive extension alone.
  The two changes that made the image side learn (docs/experiments.md, section 7), each
  taken back from `full`:
  (g) no_pair:          without the title <-> photo pair of views.
  (h) linear_stem:      ViT's linear patch embedding instead of the convolutional stem.
  The change that made the emoji set's image side learn (docs/experiments.md, section 11),
  taken back from `full`:
  (i) every_seller:     batches of every seller, and ITM partners and contrastive
                        negatives from every seller in the batch, not only the listing's
                        own (the same as `full` on a catalog without sellers, such as the
                        embedded one).

The model and schedule are the main job's (`configs/demo.py`: the tiny config narrowed to 2
layers of width 128, 2,000 steps), so the `full` row is the main job's model. Validation
retrieval runs every 250 steps, so the table can show when each variant's embedding was
best, not only where it ended.

All of them, trained, evaluated and tabulated beside the reference rows:
  python -m item_jax.cli.ablation --data_dir runs/demo/shards --workdir runs/ablation
One of them:
  python -m item_jax.cli.train --config configs/ablation.py:no_global \
      --workdir runs/ablation/no_global \
      --config.data.dir runs/demo/shards
"""

from item_jax import configs
from item_jax.configs import defaults, demo

_ITEM = defaults.ITEM_OBJECTIVES
_CROSS = defaults.default_config().contrastive.cross_views
# recipe -> (objectives, modalities, contrastive views, views set against each other)
RECIPES = {
    "text_only": ("mlm,gmlm,contrastive", "text", "title", ""),
    "image_only": ("mim,gmim,contrastive", "image", "image", ""),
    "no_global": ("itm,mlm,mim,contrastive", "text,image", "title,image", _CROSS),
    "full": (f"{_ITEM},contrastive", "text,image", "title,image", _CROSS),
    "item_paper": (_ITEM, "text,image", "title,image", _CROSS),
    "contrastive_only": ("contrastive", "text,image", "title,image", _CROSS),
    "no_pair": (f"{_ITEM},contrastive", "text,image", "title,image", ""),
    "linear_stem": (f"{_ITEM},contrastive", "text,image", "title,image", _CROSS),
    "every_seller": (f"{_ITEM},contrastive", "text,image", "title,image", _CROSS),
}
# Fields beyond the recipe that a variant changes.
MODEL_CHANGES = {
    "linear_stem": {"model.patch_stem": "linear"},
    "every_seller": {"same_seller_negatives": False, "data.seller_buckets": 0},
}
# One variant per recipe: `configs/ablation.py:no_global`; without a variant, `full`.
VARIANTS = {
    name: dict(
        zip(
            ("objectives", "modalities", "contrastive.views", "contrastive.cross_views"),
            recipe,
        ),
        **MODEL_CHANGES.get(name, {}),
    )
    for name, recipe in RECIPES.items()
}


def get_config(arg=None):
    return configs.apply_variants(demo.get_config(), arg or "full", VARIANTS, __file__)
