"""Base ITEm, the paper's scale: BERT-base (S=224, P=16, L=40, 12 layers, width 768, 12 heads).

Run it on one host:
  python -m item_jax.cli.train --config configs/base.py --workdir runs/base \
      --config.data.dir DIR_OF_SHARDS
On a TPU pod (FSDP over 8 chips x data over the rest; docs/launch.md):
  bash launch/tpu_pod.sh --name item-base --zone us-central2-b --accelerator_type v4-32 -- \
      --config configs/base.py:pod --workdir gs://BUCKET/base --config.data.dir DIR

Started from pretrained checkpoints (docs/pretrained.md; variants combine with commas,
e.g. `base.py:bert,pod`):
  bert   BERT-base's layout (post-LN, embedding LayerNorm, exact GELU, eps 1e-12, its 30,522
         WordPiece ids): --config.init.text_from BERT_DIR [--config.init.vision_from VIT_DIR]
  vit    ViT-B/16's layout (pre-LN, exact GELU, eps 1e-12), text from scratch:
         --config.init.vision_from VIT_DIR
  vilt   as ViLT: ViT-B/16's blocks and patch embedding, BERT's text embeddings:
         --config.init.text_from BERT_DIR --config.init.vision_from VIT_DIR
The shards must then hold BERT's WordPiece ids for bert and vilt (`python -m
item_jax.cli.convert ... --wordpiece_vocab BERT_DIR/vocab.txt`).
"""

from item_jax import configs
from item_jax.configs import defaults

BERT_BASE_VOCAB_SIZE = 30522
# The layout that BERT's and ViT's published checkpoints share; a ViT checkpoint
# (`init.vision_from`) imports into ViT's linear patch embedding.
_PUBLISHED_LAYOUT = {
    "model.layer_norm_epsilon": 1e-12,
    "model.gelu": "exact",
    "model.patch_stem": "linear",
}
VARIANTS = {
    # ITM partners from each chip's own shard of the batch: from the global batch they cost
    # an all-gather of every image over the slice each step (docs/launch.md).
    "pod": {"mesh.data": -1, "mesh.fsdp": 8, "mesh.tensor": 1, "masking.itm_partners": "shard"},
    "bert": {
        **_PUBLISHED_LAYOUT,
        "model.block_norm": "post",
        "model.text_embedding_norm": True,
        "model.vocab_size": BERT_BASE_VOCAB_SIZE,
        "init.encoder_from": "text",
    },
    "vit": {**_PUBLISHED_LAYOUT, "init.encoder_from": "vision"},
    "vilt": {
        **_PUBLISHED_LAYOUT,
        "model.text_embedding_norm": True,
        "model.vocab_size": BERT_BASE_VOCAB_SIZE,
        "init.encoder_from": "vision",
    },
}


def get_config(arg=None):
    config = defaults.default_config()
    config.model.update(
        image_size=224,
        patch_size=16,
        max_text_len=40,
        vocab_size=32000,
        num_layers=12,
        hidden_dim=768,
        num_heads=12,
        mlp_dim=3072,
        embed_dim=768,
        compute_dtype="bfloat16",
    )
    config.global_batch_size = 1024
    config.total_steps = 200_000
    config.optimizer.learning_rate = 2e-4
    config.optimizer.warmup_steps = 5_000
    config.optimizer.weight_decay = 0.05
    config.checkpoint_every_steps = 2_000
    config.log_every_steps = 100
    config.data.shuffle_buffer = 50_000
    return configs.apply_variants(config, arg, VARIANTS, __file__)
