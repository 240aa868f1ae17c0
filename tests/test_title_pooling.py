"""`model.title_pooling`: the embedding's title half from the `[CLS]` state or the mean state."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_config

from item_jax import batch as batch_lib
from item_jax import checkpoint, config_check, configs, metrics_logger, train_loop
from item_jax.evaluation import protocol
from item_jax.model import ItemModel, model_from_config


def _setup(**overrides):
    config = small_config(**{"model.product_embedding": "views", **overrides})
    model = model_from_config(config.model)
    params = model.init(jax.random.key(0), *batch_lib.dummy_model_inputs(config.model))["params"]
    batch = {
        key: jnp.asarray(value)
        for key, value in batch_lib.random_batch(config.model, 16, seed=5).items()
    }
    return config, model, params, batch


def _title_pass(model, params, batch):
    return model.apply(
        {"params": params},
        batch["text_tokens"],
        batch["text_mask"],
        None,
        jnp.zeros_like(batch["has_image"]),
        method=ItemModel.encode,
    )


def _photo_half(model, params, batch):
    empty = batch_lib.remove_titles(batch["text_tokens"][:, :2], batch["text_mask"][:, :2])
    cls_state = model.apply(
        {"params": params},
        empty["text_tokens"],
        empty["text_mask"],
        batch["image"],
        batch["has_image"],
        method=ItemModel.encode,
    )["cls_state"]
    return model.apply({"params": params}, cls_state, method=ItemModel.embed_product)


def test_mean_pooling_averages_the_final_states_of_the_title_slots_and_ignores_padding():
    config, model, params, batch = _setup(**{"model.title_pooling": "mean"})
    encoded = _title_pass(model, params, batch)
    pooled = np.asarray(model.apply({"params": params}, encoded, method=ItemModel.title_state))
    states, mask = np.asarray(encoded["sequence_states"]), np.asarray(batch["text_mask"])
    by_hand = np.stack([row[m > 0].mean(0) for row, m in zip(states, mask)])
    np.testing.assert_allclose(pooled, by_hand, atol=1e-5)
    assert np.abs(pooled - np.asarray(encoded["cls_state"])).max() > 1e-2

    # A padded slot's token is not read: the same listings with other tokens in their padding.
    padded = mask == 0
    assert padded.any()
    other = dict(batch, text_tokens=jnp.where(padded, 7, batch["text_tokens"]))
    embed = lambda b: np.asarray(
        model.apply(
            {"params": params},
            *(b[key] for key in batch_lib.MODEL_INPUT_KEYS),
            method=ItemModel.embed,
        )
    )
    np.testing.assert_allclose(embed(other), embed(batch), atol=1e-5)


def test_the_title_half_of_the_embedding_is_the_pooled_title_pass():
    config, model, params, batch = _setup(**{"model.title_pooling": "mean"})
    encoded = _title_pass(model, params, batch)
    states, mask = encoded["sequence_states"], batch["text_mask"][..., None]
    mean_state = (states * mask).sum(1) / mask.sum(1)
    title = model.apply({"params": params}, mean_state, method=ItemModel.embed_product)
    photo = _photo_half(model, params, batch)
    got = model.apply(
        {"params": params},
        *(batch[key] for key in batch_lib.MODEL_INPUT_KEYS),
        method=ItemModel.embed,
    )
    np.testing.assert_allclose(
        np.asarray(got), np.concatenate([title, photo], 1) / np.sqrt(2), atol=1e-5
    )


def test_runs_stored_before_the_field_keep_the_cls_state():
    stored = small_config().to_dict()
    del stored["model"]["title_pooling"]
    assert configs.upgrade_stored_config(stored).model.title_pooling == "cls"


def test_an_unknown_title_pooling_is_refused_naming_the_field():
    with pytest.raises(config_check.ConfigError, match="model.title_pooling"):
        config_check.check_config(small_config(**{"model.title_pooling": "max"}))


def test_auto_is_accepted_and_pools_by_the_mean_until_settled():
    config = small_config(**{"model.title_pooling": "auto"})
    config_check.check_config(config)
    assert model_from_config(config.model).title_pooling == "mean"


@pytest.mark.parametrize(
    "mean, cls, chosen", [(0.5, 0.6, "cls"), (0.6, 0.5, "mean"), (0.5, 0.5, "mean")]
)
def test_auto_writes_the_pooling_with_the_higher_validation_recall(tmp_path, mean, cls, chosen):
    config = small_config(**{"model.title_pooling": "auto"})
    (tmp_path / "config.json").write_text(config.to_json_best_effort(indent=2))
    validation = {"title_pooling.mean.recall@1": mean, "title_pooling.cls.recall@1": cls}
    train_loop._settle_title_pooling(config, str(tmp_path), validation)
    stored = checkpoint.load_workdir_config(str(tmp_path))
    assert stored.model.title_pooling == chosen
    assert stored.model.embed_dim == config.model.embed_dim  # The rest is kept.


def test_without_validation_auto_stays_and_a_fixed_pooling_is_never_rewritten(tmp_path):
    auto = small_config(**{"model.title_pooling": "auto"})
    (tmp_path / "config.json").write_text(auto.to_json_best_effort(indent=2))
    train_loop._settle_title_pooling(auto, str(tmp_path), {"retrieval.recall@1": 0.5})
    assert checkpoint.load_workdir_config(str(tmp_path)).model.title_pooling == "auto"
    fixed = small_config(**{"model.title_pooling": "mean"})
    (tmp_path / "config.json").write_text(fixed.to_json_best_effort(indent=2))
    validation = {"title_pooling.mean.recall@1": 0.1, "title_pooling.cls.recall@1": 0.9}
    train_loop._settle_title_pooling(fixed, str(tmp_path), validation)
    assert checkpoint.load_workdir_config(str(tmp_path)).model.title_pooling == "mean"


def test_the_validation_line_shows_both_poolings_under_auto(tmp_path):
    logger = metrics_logger.MetricsLogger(str(tmp_path), total_steps=10)
    validation = {
        "retrieval.recall@1": 0.5,
        "title_pooling.mean.recall@1": 0.5,
        "title_pooling.cls.recall@1": 0.625,
    }
    line = logger.console_line(10, validation, split="validation")
    logger.close()
    assert "title_pooling.mean.recall@1=0.5 title_pooling.cls.recall@1=0.625" in line


@pytest.mark.slow
def test_a_run_under_auto_stores_the_pooling_its_final_validation_preferred(
    catalog_shards, tmp_path
):
    config = small_config(
        total_steps=4,
        evaluators="retrieval",
        **{"data.dir": catalog_shards, "model.title_pooling": "auto"},
    )
    workdir = str(tmp_path / "run")
    train_loop.train_and_evaluate(
        config, workdir, evaluate_fn=protocol.make_validation_evaluator(config, catalog_shards)
    )
    with open(f"{workdir}/metrics.jsonl", encoding="utf-8") as f:
        final = [json.loads(line) for line in f if "title_pooling.cls.recall@1" in line][-1]
    # The mean candidate is the embedding the trainer validated (it pools by the mean).
    assert final["title_pooling.mean.recall@1"] == final["retrieval.recall@1"]
    better = (
        "cls"
        if final["title_pooling.cls.recall@1"] > final["title_pooling.mean.recall@1"]
        else "mean"
    )
    assert checkpoint.load_workdir_config(workdir).model.title_pooling == better
