"""The attention kernel is a config switch; the XLA kernel computes what the default does."""

import jax
import numpy as np
from conftest import small_config

from item_jax import batch as batch_lib
from item_jax import profiling
from item_jax.model import ItemModel, model_from_config


def _embed(config, params, batch):
    return model_from_config(config.model).apply(
        {"params": params},
        batch["text_tokens"],
        batch["text_mask"],
        batch["image"],
        batch["has_image"],
        method=ItemModel.embed,
    )


def test_xla_attention_matches_the_default():
    default = small_config()
    forced = small_config(**{"model.attention_implementation": "xla"})
    assert model_from_config(forced.model).attention_implementation == "xla"
    assert model_from_config(default.model).attention_implementation is None
    batch = batch_lib.random_batch(default.model, 4)
    model = model_from_config(default.model)
    params = model.init(
        jax.random.key(0),
        batch["text_tokens"],
        batch["text_mask"],
        batch["image"],
        batch["has_image"],
        method=ItemModel.embed,
    )["params"]
    np.testing.assert_allclose(
        _embed(forced, params, batch), _embed(default, params, batch), rtol=1e-5, atol=1e-6
    )


def test_mfu_peaks_are_found_by_device_kind():
    assert profiling.peak_bf16_tflops("NVIDIA H200") == 989.0
    assert profiling.peak_bf16_tflops("TPU v4") == 275.0
    assert profiling.peak_bf16_tflops("cpu") is None
