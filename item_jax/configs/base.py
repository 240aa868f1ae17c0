"""Base ITEm, the paper's scale: BERT-base (S=224, P=16, L=40, 12 layers, width 768, 12 heads).

Run it on one host:
  python -m item_jax.cli.train --config configs/base.py --workdir runs/base \
      --config.data.dir DIR_OF_SHARDS
On a TPU pod (FSDP over 8 chips x data over the rest; docs/launch.md):
  bash launch/tpu_pod.sh --name item-base --zone us-central2-b --accelerator_type v4-32 -- \
      --config configs/base.py:pod --workdir gs://BUCKET/base --config.data.dir DIR
"""

from item_jax.configs import defaults


def get_config(arg=None):
  config = defaults.default_config()
  config.model.update(image_size=224, patch_size=16, max_text_len=40, vocab_size=32000,
                      num_layers=12, hidden_dim=768, num_heads=12, mlp_dim=3072,
                      embed_dim=768, compute_dtype="bfloat16")
  config.global_batch_size = 1024
  config.total_steps = 200_000
  config.optimizer.learning_rate = 2e-4
  config.optimizer.warmup_steps = 5_000
  config.optimizer.weight_decay = 0.05
  config.checkpoint_every_steps = 2_000
  config.log_every_steps = 100
  config.data.shuffle_buffer = 50_000
  if arg == "pod":
    config.mesh.update(data=-1, fsdp=8, tensor=1)
  return config
