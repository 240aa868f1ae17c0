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

from item_jax.configs import defaults

VARIANTS = ("pod", "bert", "vit", "vilt")
BERT_BASE_VOCAB_SIZE = 30522


def get_config(arg=None):
    variants = [name.strip() for name in (arg or "").split(",") if name.strip()]
    unknown = [name for name in variants if name not in VARIANTS]
    if unknown:
        raise ValueError(f"base.py: unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
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
    if "pod" in variants:
        config.mesh.update(data=-1, fsdp=8, tensor=1)
    if {"bert", "vit", "vilt"} & set(variants):
        config.model.update(layer_norm_epsilon=1e-12, gelu="exact")
    if "bert" in variants:
        config.model.update(
            block_norm="post", text_embedding_norm=True, vocab_size=BERT_BASE_VOCAB_SIZE
        )
        config.init.encoder_from = "text"
    if {"bert", "vit", "vilt"} & set(variants):
        # A ViT checkpoint (`init.vision_from`) imports into ViT's linear patch embedding.
        config.model.patch_stem = "linear"
    if "vit" in variants:
        config.init.encoder_from = "vision"
    if "vilt" in variants:
        config.model.update(text_embedding_norm=True, vocab_size=BERT_BASE_VOCAB_SIZE)
        config.init.encoder_from = "vision"
    return config
