"""Train-step throughput: examples/s, step time and model TFLOP/s of the compiled step.

The batch is random data already on the devices, so the figure is the step alone (the input
pipeline has its own benchmark). FLOPs are counted from the config's dims
(`item_jax.profiling.flops_per_example`) and, for comparison, from XLA's cost analysis.
"""

import time

import jax
import numpy as np

from item_jax import allocator, config_check, profiling, sharding, train_step
from item_jax import batch as batch_lib
from item_jax.model import model_from_config


def benchmark_train(config, *, steps: int = 20, warmup_steps: int = 2, blocks: int = 1) -> dict:
    """Compiles the step for `config` and times `steps` steps after `warmup_steps`.

    `blocks` > 1 times that many blocks of `steps` steps: `step_ms` is then the fastest
    block's and `block_step_ms` lists every block's (the fastest block is the steadiest
    figure for comparing two versions of the step on a noisy machine).
    """
    if blocks < 1 or steps < 1:
        raise ValueError(f"steps and blocks must be >= 1, got {steps} and {blocks}")
    config_check.check_config(config)
    mesh = sharding.make_mesh(config.mesh)
    config_check.check_config_against_mesh(config, mesh, jax.process_count())
    model = model_from_config(config.model)
    setup = train_step.build_train_setup(model, config, mesh)
    compile_start = time.perf_counter()
    step_fn = train_step.compile_train_step(setup, config)
    compile_s = time.perf_counter() - compile_start
    state = setup.init_state(jax.random.key(config.seed))
    batch = jax.device_put(
        batch_lib.random_batch(config.model, config.global_batch_size), setup.batch_sharding
    )
    for _ in range(warmup_steps):
        state, metrics = step_fn(state, batch)
    jax.block_until_ready(metrics)
    block_step_s = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(steps):
            state, metrics = step_fn(state, batch)
        jax.block_until_ready(metrics)
        block_step_s.append((time.perf_counter() - start) / steps)
    step_s = min(block_step_s)
    examples_per_s = config.global_batch_size / step_s
    counted_flops = profiling.flops_per_example(config.model)
    cost = step_fn.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost.get("flops", 0.0)) if cost else 0.0
    num_params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(state["params"]))
    m = config.model
    model_tflops_per_s = examples_per_s * counted_flops / 1e12
    peak = profiling.peak_bf16_tflops(jax.devices()[0].device_kind)
    return dict(
        benchmark="train_step",
        backend=jax.default_backend(),
        device_kind=jax.devices()[0].device_kind,
        num_devices=jax.device_count(),
        host_cpu=profiling.host_cpu(),
        mesh=dict(setup.mesh.shape),
        global_batch_size=config.global_batch_size,
        compute_dtype=m.compute_dtype,
        steps=steps,
        compile_s=round(compile_s, 2),
        step_ms=round(1000 * step_s, 2),
        examples_per_s=round(examples_per_s, 2),
        block_step_ms=[round(1000 * s, 2) for s in block_step_s],
        model_tflops_per_s=round(model_tflops_per_s, 4),
        peak_bf16_tflops_per_device=peak,
        mfu=(round(model_tflops_per_s / (peak * jax.device_count()), 4) if peak else None),
        attention_implementation=m.attention_implementation or "default",
        counted_gflops_per_example=round(counted_flops / 1e9, 3),
        xla_gflops_per_step=round(xla_flops / 1e9, 3),
        params=num_params,
        objectives=config.objectives,
        dims=dict(
            image_size=m.image_size,
            patch_size=m.patch_size,
            max_text_len=m.max_text_len,
            vocab_size=m.vocab_size,
            num_layers=m.num_layers,
            hidden_dim=m.hidden_dim,
            num_heads=m.num_heads,
            mlp_dim=m.mlp_dim,
            seq_len=m.max_text_len + (m.image_size // m.patch_size) ** 2,
        ),
        memory_per_device=profiling.memory_summary(step_fn.memory_analysis()),
        final_loss=float(metrics["loss"]),
        jax_version=jax.__version__,
        allocator=allocator.loaded_allocator(),
    )
