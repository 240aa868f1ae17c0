"""The trainer can learn: every objective memorises one fixed batch of real listings.

A model whose heads cannot read what they need (the global heads' old `[CLS]` + raw position
sum, a head cut off from `[CLS]`) stays far from these thresholds; the second test shows
that the check fails on such a break.
"""

import jax.numpy as jnp
import pytest
from conftest import small_config

from item_jax.benchmarks import memorisation
from item_jax.model import ItemModel

ALL_OBJECTIVES = "itm,mlm,mim,gmlm,gmim"
STEPS = 800


def _memorise(catalog_shards, objectives=ALL_OBJECTIVES):
    config = small_config(
        objectives=objectives, **{"optimizer.learning_rate": 2e-3, "optimizer.warmup_steps": 20}
    )
    batch = memorisation.first_listings(config, catalog_shards, 8)
    return memorisation.memorise(config, batch, steps=STEPS)


@pytest.mark.slow
def test_every_objective_memorises_a_fixed_batch(catalog_shards):
    result = _memorise(catalog_shards)
    assert memorisation.check_memorised(result) == [], result
    for name in ("itm", "mlm", "gmlm"):  # From chance (or below) at the start.
        assert result["start"][f"{name}_accuracy"] < 0.6, result["start"]


@pytest.mark.slow
def test_the_check_fails_when_a_global_head_loses_the_cls_state(catalog_shards, monkeypatch):
    original = ItemModel.gmlm_logits

    def without_cls(self, cls_state, text_positions):
        return original(self, jnp.zeros_like(cls_state), text_positions)

    monkeypatch.setattr(ItemModel, "gmlm_logits", without_cls)
    result = _memorise(catalog_shards, objectives="mlm,gmlm")
    failures = memorisation.check_memorised(result)
    assert any(failure.startswith("gmlm accuracy") for failure in failures), result
    assert not any(failure.startswith("mlm accuracy") for failure in failures), result


def test_the_supervised_image_probe_reports_a_falling_loss_and_a_validation_curve(catalog_shards):
    """`bench image-probe`: the encoder, trained on the category from photos alone, learns."""
    import math  # pylint: disable=g-import-not-at-top

    from item_jax.benchmarks import supervised_image_probe  # pylint: disable=g-import-not-at-top

    config = small_config(**{"optimizer.learning_rate": 2e-3, "optimizer.warmup_steps": 10})
    result = supervised_image_probe.probe_image_path(
        config, catalog_shards, steps=120, eval_every=60
    )
    assert result["patch_stem"] == "conv" and sorted(result["validation_accuracy"]) == [60, 120]
    assert all(0.0 <= value <= 1.0 for value in result["validation_accuracy"].values())
    assert result["final_train_loss"] < 0.7 * math.log(result["num_classes"]), result
