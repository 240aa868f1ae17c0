"""The sharded step: 8 devices (data x fsdp x tensor) agree with 1 device; shardings are real."""

import jax
import numpy as np
import pytest
from conftest import small_config

from item_jax import sharding, train_step
from item_jax.batch import random_batch
from item_jax.model import model_from_config


def _run_steps(config, devices, num_steps=3):
    mesh = sharding.make_mesh(config.mesh, devices)
    setup = train_step.build_train_setup(model_from_config(config.model), config, mesh)
    step_fn = train_step.compile_train_step(setup, config)
    state = setup.init_state(jax.random.key(0))
    losses = []
    for step in range(num_steps):
        batch = jax.device_put(
            random_batch(config.model, config.global_batch_size, seed=step), setup.batch_sharding
        )
        state, metrics = step_fn(state, batch)
        losses.append(float(metrics["loss"]))
    return losses, jax.device_get(state["params"]), state


@pytest.mark.slow
@pytest.mark.parametrize("mesh", [dict(data=2, fsdp=2, tensor=2), dict(data=1, fsdp=4, tensor=2)])
def test_sharded_step_matches_single_device(mesh):
    single_config = small_config(**{"mesh.data": 1, "mesh.fsdp": 1, "mesh.tensor": 1})
    losses_1, params_1, _ = _run_steps(single_config, jax.devices()[:1])
    sharded_config = small_config(**{f"mesh.{k}": v for k, v in mesh.items()})
    losses_8, params_8, state_8 = _run_steps(sharded_config, jax.devices())
    np.testing.assert_allclose(losses_8, losses_1, rtol=2e-5)
    assert losses_1[-1] != losses_1[0]  # The steps really updated the parameters.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6), params_8, params_1
    )
    kernel = state_8["params"]["block_0"]["mlp_in"]["kernel"]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")


@pytest.mark.slow
def test_fsdp_shards_params_and_optimizer_state():
    config = small_config(**{"mesh.data": 1, "mesh.fsdp": 8, "mesh.tensor": 1})
    _, _, state = _run_steps(config, jax.devices(), num_steps=1)
    total = sum(leaf.nbytes for leaf in jax.tree.leaves(state["params"]))
    per_device = sharding.bytes_per_device(state["params"])
    opt_per_device = sharding.bytes_per_device(state["opt_state"])
    assert len(per_device) == 8
    # The conv stem's convolutions stay replicated (a few thousand weights; their channel
    # counts need not divide the axis); its projection to the model width is sharded.
    stem = state["params"]["conv_stem"]
    replicated_stem = sum(
        leaf.nbytes
        for name, layer in stem.items()
        if name != "projection"
        for leaf in jax.tree.leaves(layer)
    )
    assert stem["projection"]["kernel"].sharding.spec == jax.sharding.PartitionSpec(None, "fsdp")
    # Everything else but small replicated leaves (norms, biases, positions) is split 8 ways.
    assert max(per_device.values()) - replicated_stem < 0.35 * (total - replicated_stem)
    # Adam's mu and nu, sharded the same.
    assert max(opt_per_device.values()) - 2 * replicated_stem < 0.7 * (total - replicated_stem)


def test_step_compiles_once():
    config = small_config()
    mesh = sharding.make_mesh(config.mesh)
    setup = train_step.build_train_setup(model_from_config(config.model), config, mesh)
    jitted = train_step.make_train_step(setup, config)
    state = setup.init_state(jax.random.key(0))
    with (
        jax.set_mesh(mesh),
        __import__("flax").linen.logical_axis_rules(sharding.LOGICAL_AXIS_RULES),
    ):
        for seed in range(3):
            batch = jax.device_put(random_batch(config.model, 16, seed=seed), setup.batch_sharding)
            state, _ = jitted(state, batch)
    assert jitted._cache_size() == 1


def test_train_benchmark_times_blocks_and_reports_the_fastest():
    from item_jax.benchmarks import train_throughput  # pylint: disable=g-import-not-at-top

    config = small_config(global_batch_size=8)
    result = train_throughput.benchmark_train(config, steps=2, warmup_steps=1, blocks=3)
    assert len(result["block_step_ms"]) == 3
    assert result["step_ms"] == min(result["block_step_ms"]) > 0
    assert result["examples_per_s"] == pytest.approx(8 / (result["step_ms"] / 1000), rel=1e-2)
    with pytest.raises(ValueError, match="blocks"):
        train_throughput.benchmark_train(config, steps=2, blocks=0)
