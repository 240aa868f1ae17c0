"""Large ITEm: 24 layers, width 1024, 16 heads, tensor-parallel over 4 devices.

Run it on a TPU pod (docs/launch.md):
  bash launch/tpu_pod.sh --name item-large --zone us-east5-a --accelerator_type v5p-64 -- \
      --config configs/large.py --workdir gs://BUCKET/large --config.data.dir DIR
"""

from item_jax import configs
from item_jax.configs import defaults

VARIANTS = {}


def get_config(arg=None):
    config = defaults.default_config()
    config.model.update(
        image_size=224,
        patch_size=16,
        max_text_len=40,
        vocab_size=32000,
        num_layers=24,
        hidden_dim=1024,
        num_heads=16,
        mlp_dim=4096,
        embed_dim=1024,
        compute_dtype="bfloat16",
        remat=True,
    )
    config.global_batch_size = 2048
    config.total_steps = 300_000
    config.optimizer.learning_rate = 1e-4
    config.optimizer.warmup_steps = 10_000
    config.checkpoint_every_steps = 2_000
    config.log_every_steps = 100
    config.data.shuffle_buffer = 50_000
    config.mesh.update(data=-1, fsdp=8, tensor=4)
    # ITM partners from each chip's own shard of the batch: from the global batch they cost
    # an all-gather of every image over the slice each step (docs/launch.md).
    config.masking.itm_partners = "shard"
    return configs.apply_variants(config, arg, VARIANTS, __file__)
