"""ITM partners drawn within each data-parallel shard of the batch (`masking.itm_partners`):
the draw's rules hold in the block, and the compiled step gathers no images across devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_config

from item_jax import hlo_collectives, masking, objectives, sharding, train_step
from item_jax.batch import random_batch
from item_jax.model import model_from_config


def _global_draw(rng, group_index, eligible, negative_fraction, num_candidates=8):
    """The draw over the whole batch as it was before shards: the reference of "global"."""
    batch_size = group_index.shape[0]
    pick_rng, candidate_rng = jax.random.split(rng)
    wants_negative = jax.random.uniform(pick_rng, (batch_size,)) < negative_fraction
    candidates = jax.random.randint(candidate_rng, (batch_size, num_candidates), 0, batch_size)
    valid = (
        (group_index[candidates] != group_index[:, None])
        & (eligible[candidates] > 0)
        & (candidates != jnp.arange(batch_size)[:, None])
    )
    partner = jnp.take_along_axis(candidates, jnp.argmax(valid, axis=1)[:, None], axis=1)[:, 0]
    negative = wants_negative & valid.any(axis=1) & (eligible > 0)
    return jnp.where(negative, partner, jnp.arange(batch_size)), (~negative).astype(jnp.int32)


def _groups_and_eligible(seed, batch_size=64):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 12, batch_size).astype(np.int32)
    eligible = (rng.uniform(size=batch_size) < 0.8).astype(np.int32)
    return jnp.asarray(groups), jnp.asarray(eligible)


@pytest.mark.parametrize("num_shards", [2, 8])
def test_shard_partners_lie_in_their_block_and_keep_the_rules(num_shards):
    block = 64 // num_shards
    negatives = 0
    for seed in range(4):
        groups, eligible = _groups_and_eligible(seed)
        source, matched = masking.draw_itm_partners(
            jax.random.key(seed), groups, eligible, 0.5, num_shards=num_shards
        )
        source, matched = np.asarray(source), np.asarray(matched)
        groups, eligible = np.asarray(groups), np.asarray(eligible)
        rows = np.arange(64)
        negative = matched == 0
        negatives += negative.sum()
        np.testing.assert_array_equal(source // block, rows // block)
        np.testing.assert_array_equal(source[~negative], rows[~negative])
        assert np.all(source[negative] != rows[negative])
        assert np.all(groups[source[negative]] != groups[negative])
        assert np.all(eligible[source[negative]] == 1)
        assert np.all(eligible[negative] == 1)
    assert negatives > 0.25 * 4 * 64 * 0.8  # About half the eligible examples.


def test_a_shard_with_one_group_stays_matched():
    # Block 0 is one product group; block 1 has two.
    groups = jnp.asarray([0, 0, 0, 0, 1, 2, 1, 2], jnp.int32)
    source, matched = masking.draw_itm_partners(
        jax.random.key(0), groups, jnp.ones((8,), jnp.int32), 0.99, num_shards=2
    )
    np.testing.assert_array_equal(np.asarray(matched)[:4], 1)
    np.testing.assert_array_equal(np.asarray(source)[:4], np.arange(4))
    assert np.asarray(matched)[4:].sum() < 4


def test_one_shard_is_the_global_draw():
    for seed in range(3):
        groups, eligible = _groups_and_eligible(seed)
        drawn = masking.draw_itm_partners(jax.random.key(seed), groups, eligible, 0.5)
        expected = _global_draw(jax.random.key(seed), groups, eligible, 0.5)
        for got, want in zip(drawn, expected):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_gather_within_shards_is_the_plain_gather():
    values = jnp.arange(8 * 3, dtype=jnp.float32).reshape(8, 3)
    source = jnp.asarray([1, 0, 3, 3, 4, 7, 5, 6], jnp.int32)
    for num_shards in (1, 2):
        np.testing.assert_array_equal(
            np.asarray(masking.gather_within_shards(values, source, num_shards)),
            np.asarray(values[source]),
        )


def test_prepare_pairs_images_from_the_shard_and_global_ignores_shards():
    config = small_config()
    model = model_from_config(config.model)
    batch = {k: jnp.asarray(v) for k, v in random_batch(config.model, 16, seed=2).items()}
    rng = jax.random.key(5)

    def images_and_matched(partners, batch_shards):
        config.masking.itm_partners = partners
        fns = objectives.make_objective_fns(model, config, batch_shards=batch_shards)
        inputs, targets = fns.prepare(batch, rng)
        return np.asarray(inputs["images"]), np.asarray(targets["matched"])

    global_images, _ = images_and_matched("global", 1)
    np.testing.assert_array_equal(images_and_matched("global", 4)[0], global_images)
    np.testing.assert_array_equal(images_and_matched("shard", 1)[0], global_images)
    images, matched = images_and_matched("shard", 4)
    originals = np.asarray(batch["image"])
    assert (matched == 0).any()
    for row in range(16):
        block = np.arange(16)[row // 4 * 4 : row // 4 * 4 + 4]
        owners = [j for j in block if np.array_equal(images[row], originals[j])]
        assert len(owners) == 1  # The photo is of this block's examples.
        assert (owners[0] == row) == bool(matched[row])


def _image_batch_gathers(config, devices_in_batch_axes):
    """Compiles the step on 8 host devices: (all-gathers over every data-parallel device of
    at least the image batch's bytes, setup, compiled step)."""
    mesh = sharding.make_mesh(config.mesh, jax.devices())
    setup = train_step.build_train_setup(model_from_config(config.model), config, mesh)
    compiled = train_step.compile_train_step(setup, config)
    image_bytes = config.global_batch_size * config.model.image_size**2 * 3 * 4
    gathers = [
        collective
        for collective in hlo_collectives.collectives(compiled.as_text())
        if collective.opcode == "all-gather"
        and collective.group_size == devices_in_batch_axes
        and collective.bytes >= image_bytes
    ]
    return gathers, setup, compiled


@pytest.mark.slow
def test_shard_partners_gather_no_images_across_devices_and_train():
    mesh = {"mesh.data": 4, "mesh.fsdp": 2, "mesh.tensor": 1}
    global_gathers, _, _ = _image_batch_gathers(small_config(**mesh), 8)
    assert global_gathers  # The global draw gathers the images of the whole batch.
    config = small_config(**mesh, **{"masking.itm_partners": "shard"})
    shard_gathers, setup, compiled = _image_batch_gathers(config, 8)
    assert not shard_gathers

    # The sharded step draws what one device drawing within 8 blocks draws.
    state = setup.init_state(jax.random.key(0))
    params = jax.device_get(state["params"])
    host_batch = random_batch(config.model, config.global_batch_size, seed=0)
    # One product per listing: random_batch pairs rows 2k and 2k+1, a whole block of 2 here.
    host_batch["group_index"] = np.arange(config.global_batch_size, dtype=np.int32)
    _, metrics = compiled(state, jax.device_put(host_batch, setup.batch_sharding))
    assert np.isfinite(float(metrics["itm_loss"])) and float(metrics["itm_negatives"]) > 0
    loss_fn = objectives.make_objective_fns(setup.model, config, batch_shards=8).loss
    _, expected = jax.jit(loss_fn)(
        params,
        {k: jnp.asarray(v) for k, v in host_batch.items()},
        jax.random.fold_in(jax.random.key(config.seed), 0),
    )
    for name in ("itm_loss", "itm_negatives", "mlm_loss", "mim_loss"):
        np.testing.assert_allclose(float(metrics[name]), float(expected[name]), rtol=2e-5)
