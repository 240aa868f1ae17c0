"""Train-step throughput: examples/s, step time and model TFLOP/s of the compiled step.

The batch is random data already on the devices, so the figure is the step alone (the input
pipeline has its own benchmark). FLOPs are counted from the config's dims
(`item_jax.train.flops_per_example`) and, for comparison, from XLA's cost analysis.
"""

import time

import jax
import numpy as np

from item_jax import config_check, sharding, train_step
from item_jax.data import tokenizer
from item_jax.model import model_from_config
from item_jax.trainer import flops_per_example, memory_summary


# Dense bf16 peak TFLOP/s per chip, by a substring of `jax.Device.device_kind` (vendors'
# data sheets), for MFU. A chip not listed reports no MFU.
PEAK_BF16_TFLOPS = (("H200", 989.0), ("H100", 989.0), ("A100", 312.0), ("L4", 121.0),
                    ("TPU v5p", 459.0), ("TPU v5 lite", 197.0), ("TPU v5e", 197.0),
                    ("TPU v4", 275.0), ("TPU v6", 918.0))


def peak_bf16_tflops(device_kind: str) -> float | None:
  for name, peak in PEAK_BF16_TFLOPS:
    if name.lower() in device_kind.lower():
      return peak
  return None


def random_batch(model_config, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
  """A host batch with the keys of docs/design.md: random images and titles of 8-24 pieces."""
  rng = np.random.default_rng(seed)
  length, size = model_config.max_text_len, model_config.image_size
  tokens = np.zeros((batch_size, length), np.int32)
  mask = np.zeros((batch_size, length), np.int32)
  for row in range(batch_size):
    pieces = int(rng.integers(min(8, length - 2), min(24, length - 2) + 1))
    tokens[row, 0] = tokenizer.CLS_ID
    tokens[row, 1:pieces + 1] = rng.integers(tokenizer.FIRST_WORD_PIECE_ID,
                                             model_config.vocab_size, pieces)
    tokens[row, pieces + 1] = tokenizer.SEP_ID
    mask[row, :pieces + 2] = 1
  ones = np.ones((batch_size,), np.int32)
  return dict(image=rng.uniform(-1, 1, (batch_size, size, size, 3)).astype(np.float32),
              has_image=ones, text_tokens=tokens, text_mask=mask, has_title=ones,
              group_index=np.arange(batch_size, dtype=np.int32) // 2,
              category_index=np.zeros((batch_size,), np.int32), valid=ones)


def benchmark_train(config, *, steps: int = 20, warmup_steps: int = 2) -> dict:
  """Compiles the step for `config` and times `steps` steps after `warmup_steps`."""
  config_check.check_config(config)
  mesh = sharding.make_mesh(config.mesh)
  config_check.check_config_against_mesh(config, mesh, jax.process_count())
  model = model_from_config(config.model)
  setup = train_step.build_train_setup(model, config, mesh)
  compile_start = time.perf_counter()
  step_fn = train_step.compile_train_step(setup, config)
  compile_s = time.perf_counter() - compile_start
  state = setup.init_state(jax.random.key(config.seed))
  batch = jax.device_put(random_batch(config.model, config.global_batch_size),
                         setup.batch_sharding)
  for _ in range(warmup_steps):
    state, metrics = step_fn(state, batch)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step_fn(state, batch)
  jax.block_until_ready(metrics)
  step_s = (time.perf_counter() - start) / steps
  examples_per_s = config.global_batch_size / step_s
  counted_flops = flops_per_example(config.model)
  cost = step_fn.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  xla_flops = float(cost.get("flops", 0.0)) if cost else 0.0
  num_params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(state["params"]))
  m = config.model
  model_tflops_per_s = examples_per_s * counted_flops / 1e12
  peak = peak_bf16_tflops(jax.devices()[0].device_kind)
  return dict(
      benchmark="train_step", backend=jax.default_backend(),
      device_kind=jax.devices()[0].device_kind, num_devices=jax.device_count(),
      mesh=dict(setup.mesh.shape), global_batch_size=config.global_batch_size,
      compute_dtype=m.compute_dtype, steps=steps, compile_s=round(compile_s, 2),
      step_ms=round(1000 * step_s, 2), examples_per_s=round(examples_per_s, 2),
      model_tflops_per_s=round(model_tflops_per_s, 4),
      peak_bf16_tflops_per_device=peak,
      mfu=(round(model_tflops_per_s / (peak * jax.device_count()), 4) if peak else None),
      attention_implementation=m.get("attention_implementation") or "default",
      counted_gflops_per_example=round(counted_flops / 1e9, 3),
      xla_gflops_per_step=round(xla_flops / 1e9, 3),
      params=num_params, objectives=config.objectives,
      dims=dict(image_size=m.image_size, patch_size=m.patch_size, max_text_len=m.max_text_len,
                vocab_size=m.vocab_size, num_layers=m.num_layers, hidden_dim=m.hidden_dim,
                num_heads=m.num_heads, mlp_dim=m.mlp_dim,
                seq_len=m.max_text_len + (m.image_size // m.patch_size) ** 2),
      memory_per_device=memory_summary(step_fn.memory_analysis()),
      final_loss=float(metrics["loss"]), jax_version=jax.__version__)
