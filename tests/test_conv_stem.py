"""The convolutional patch stem: the patch grid's shape, no leak of masked pixels, and it learns."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import small_config

from item_jax import batch as batch_lib
from item_jax import config_check
from item_jax.model import ItemModel, model_from_config


def _model_and_params(**overrides):
    config = small_config(**{"model.patch_stem": "conv", **overrides})
    model = model_from_config(config.model)
    params = model.init(jax.random.key(0), *batch_lib.dummy_model_inputs(model))["params"]
    params = jax.tree.map(
        lambda x: x.value if hasattr(x, "value") else x,
        params,
        is_leaf=lambda x: hasattr(x, "value"),
    )
    return config, model, params


def test_the_stem_halves_the_photo_down_to_the_patch_grid():
    _, model, params = _model_and_params()
    stem = params["conv_stem"]
    assert sorted(stem) == ["conv_0", "conv_1", "conv_2", "projection"]  # log2(8) convolutions.
    assert stem["conv_0"]["kernel"].shape == (3, 3, 3, 16)
    assert stem["conv_2"]["kernel"].shape == (3, 3, 32, 64)
    assert "patch_embedding" not in params
    batch = batch_lib.random_batch(model, 4)
    out = model.apply(
        {"params": params},
        *(jnp.asarray(batch[k]) for k in batch_lib.MODEL_INPUT_KEYS),
        method=ItemModel.encode,
    )
    assert out["sequence_states"].shape == (4, model.max_text_len + model.num_patches, 64)


def test_masked_patches_reach_no_other_slot():
    """A conv stem's cells see past their own patch; the masked pixels must not leak."""
    _, model, params = _model_and_params()
    batch = {k: jnp.asarray(v) for k, v in batch_lib.random_batch(model, 2, seed=3).items()}
    masked = jnp.zeros((2, model.num_patches)).at[:, 5].set(1.0)  # Patch (1, 1) of the 4x4 grid.
    changed = batch["image"].at[:, 8:16, 8:16].set(0.9)

    def encode(images):
        return model.apply(
            {"params": params},
            batch["text_tokens"],
            batch["text_mask"],
            images,
            batch["has_image"],
            masked,
            method=ItemModel.encode,
        )["sequence_states"]

    np.testing.assert_allclose(
        np.asarray(encode(batch["image"])), np.asarray(encode(changed)), atol=1e-6
    )
    unmasked = model.apply(
        {"params": params},
        batch["text_tokens"],
        batch["text_mask"],
        changed,
        batch["has_image"],
        method=ItemModel.encode,
    )["sequence_states"]
    plain = model.apply(
        {"params": params},
        batch["text_tokens"],
        batch["text_mask"],
        batch["image"],
        batch["has_image"],
        method=ItemModel.encode,
    )
    assert float(jnp.abs(unmasked - plain["sequence_states"]).max()) > 1e-3


def test_an_encoder_on_the_conv_stem_learns_to_tell_shapes_apart():
    """Bars vs. crosses at random places: the conv stem's encoder separates them in 60 steps."""
    rng = np.random.default_rng(0)

    def shapes(count):
        images = np.full((count, 32, 32, 3), -1.0, np.float32)
        labels = rng.integers(0, 2, count)
        for row, label in enumerate(labels):
            y, x = rng.integers(4, 20, 2)
            images[row, y + 3 : y + 6, x : x + 9] = 1.0
            if label:
                images[row, y : y + 9, x + 3 : x + 6] = 1.0
        return images, labels

    def accuracy_after_training(stem):
        config, model, params = _model_and_params(**{"model.patch_stem": stem})
        head = jnp.zeros((64, 2))
        optimizer = optax.adam(3e-3)
        state = optimizer.init((params, head))
        text = batch_lib.remove_titles(
            jnp.zeros((32, 16), jnp.int32), jnp.ones((32, 16), jnp.int32)
        )

        def logits(weights, images):
            cls = model.apply(
                {"params": weights[0]},
                text["text_tokens"][: len(images)],
                text["text_mask"][: len(images)],
                images,
                jnp.ones((len(images),), jnp.int32),
                method=ItemModel.encode,
            )["cls_state"]
            return cls @ weights[1]

        @jax.jit
        def step(weights, state, images, labels):
            loss, grads = jax.value_and_grad(
                lambda w: optax.softmax_cross_entropy_with_integer_labels(
                    logits(w, images), labels
                ).mean()
            )(weights)
            updates, state = optimizer.update(grads, state)
            return optax.apply_updates(weights, updates), state

        weights = (params, head)
        for _ in range(60):
            images, labels = shapes(32)
            weights, state = step(weights, state, jnp.asarray(images), jnp.asarray(labels))
        images, labels = shapes(32)
        return float(np.mean(np.asarray(logits(weights, jnp.asarray(images)).argmax(-1)) == labels))

    assert accuracy_after_training("conv") >= 0.9


def test_the_conv_stem_needs_a_power_of_two_patch():
    config = small_config(
        **{"model.patch_stem": "conv", "model.image_size": 36, "model.patch_size": 6}
    )
    with pytest.raises(config_check.ConfigError, match=r"config\.model\.patch_size: the conv stem"):
        config_check.check_config(config)
    with pytest.raises(config_check.ConfigError, match=r"config\.model\.patch_stem"):
        config_check.check_config(small_config(**{"model.patch_stem": "resnet"}))
