"""The product embedding: the title alone and the photo alone, or one fused pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_config

from item_jax import batch as batch_lib
from item_jax import config_check, configs, embedding
from item_jax.model import ItemModel, model_from_config


def _model_params_batch(product_embedding):
    # The title half as the `[CLS]` state; mean pooling: tests/test_title_pooling.py.
    config = small_config(
        **{"model.product_embedding": product_embedding, "model.title_pooling": "cls"}
    )
    model = model_from_config(config.model)
    params = model.init(jax.random.key(0), *batch_lib.dummy_model_inputs(config.model))["params"]
    batch = batch_lib.random_batch(config.model, 4, seed=3)
    return config, model, params, batch


def _pass(model, params, tokens, mask, images, has_image):
    cls_state = model.apply(
        {"params": params}, tokens, mask, images, has_image, method=ItemModel.encode
    )["cls_state"]
    return np.asarray(model.apply({"params": params}, cls_state, method=ItemModel.embed_product))


def _embed(model, params, batch):
    inputs = [jnp.asarray(batch[key]) for key in batch_lib.MODEL_INPUT_KEYS]
    return np.asarray(model.apply({"params": params}, *inputs, method=ItemModel.embed))


def test_views_concatenate_the_title_alone_and_the_photo_alone():
    config, model, params, batch = _model_params_batch("views")
    got = _embed(model, params, batch)
    title = _pass(
        model, params, batch["text_tokens"], batch["text_mask"], None, np.zeros(4, np.int32)
    )
    no_title = batch_lib.remove_titles(batch["text_tokens"][:, :2], batch["text_mask"][:, :2])
    photo = _pass(
        model,
        params,
        no_title["text_tokens"],
        no_title["text_mask"],
        batch["image"],
        batch["has_image"],
    )
    assert got.shape == (4, 2 * config.model.embed_dim)
    np.testing.assert_allclose(got, np.concatenate([title, photo], 1) / np.sqrt(2), atol=1e-5)
    # The halves are not copies of one another: each pass sees one modality.
    assert np.abs(title - photo).max() > 1e-2


def test_a_missing_title_or_photo_leaves_its_half_empty():
    config, model, params, batch = _model_params_batch("views")
    width = config.model.embed_dim
    whole = _embed(model, params, batch)
    no_photo = _embed(model, params, batch_lib.remove_modality(batch, "image"))
    no_title = _embed(model, params, batch_lib.remove_modality(batch, "title"))
    np.testing.assert_allclose(no_photo[:, width:], 0.0)
    np.testing.assert_allclose(no_title[:, :width], 0.0)
    # What is left is that modality's own embedding, at unit norm.
    np.testing.assert_allclose(no_photo[:, :width], whole[:, :width] * np.sqrt(2), atol=1e-5)
    np.testing.assert_allclose(no_title[:, width:], whole[:, width:] * np.sqrt(2), atol=1e-5)
    for vectors in (whole, no_photo, no_title):
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_listing_with_neither_title_nor_photo_gets_one_constant_vector():
    _, model, params, batch = _model_params_batch("views")
    empty = batch_lib.remove_modality(batch_lib.remove_modality(batch, "title"), "image")
    vectors = _embed(model, params, empty)
    # Not zero (cosine search needs a direction), and the same for every empty listing.
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, np.broadcast_to(vectors[:1], vectors.shape), atol=1e-6)


def test_fused_is_one_pass_over_title_and_photo():
    config, model, params, batch = _model_params_batch("fused")
    fused = _pass(
        model, params, batch["text_tokens"], batch["text_mask"], batch["image"], batch["has_image"]
    )
    np.testing.assert_allclose(_embed(model, params, batch), fused, atol=1e-6)
    embed_fn = embedding.make_embed_fn(config.model)
    assert embed_fn(params, batch).shape == (4, config.model.embed_dim)


def test_the_embed_function_returns_the_views_width():
    config, _, params, batch = _model_params_batch("views")
    assert embedding.make_embed_fn(config.model)(params, batch).shape == (
        4,
        2 * config.model.embed_dim,
    )


def test_runs_stored_before_the_field_keep_the_fused_embedding():
    stored = small_config().to_dict()
    del stored["model"]["product_embedding"]
    assert configs.upgrade_stored_config(stored).model.product_embedding == "fused"


def test_an_unknown_product_embedding_is_refused_naming_the_field():
    config = small_config(**{"model.product_embedding": "mean"})
    with pytest.raises(config_check.ConfigError, match="model.product_embedding"):
        config_check.check_config(config)


def test_a_one_modality_model_embeds_a_listing_with_that_modality_removed():
    # The modality-balance evaluator removes the only modality an image-only model reads;
    # the embedding must stay a direction that cosine search can use.
    from item_jax.evaluation.evaluators import inputs  # pylint: disable=g-import-not-at-top

    config = small_config(**{"model.product_embedding": "views", "modalities": "image"})
    model = model_from_config(config.model)
    params = model.init(jax.random.key(0), *batch_lib.dummy_model_inputs(config.model))["params"]
    batch = batch_lib.random_batch(config.model, 4, seed=3)
    embed = inputs.model_embedder(params, config)
    for removal in (None, "title", "image"):
        np.testing.assert_allclose(
            np.linalg.norm(embed(batch, removal), axis=1), 1.0, atol=1e-5, err_msg=str(removal)
        )
