"""The ablation script trains each variant, evaluates it and writes both tables."""

import json
import os

import pytest

from item_jax.cli import ablation
from item_jax.configs import ablation as ablation_config

SMALL = {
    "model.image_size": 32,
    "model.patch_size": 8,
    "model.max_text_len": 16,
    "model.vocab_size": 512,
    "model.num_layers": 1,
    "model.hidden_dim": 32,
    "model.num_heads": 2,
    "model.mlp_dim": 64,
    "model.embed_dim": 16,
    "global_batch_size": 16,
    "optimizer.warmup_steps": 1,
    "eval_every_steps": 2,
    "checkpoint_every_steps": 4,
    "log_every_steps": 2,
    "data.shuffle_buffer": 64,
}


@pytest.mark.slow
def test_ablation_trains_evaluates_and_tabulates(catalog_shards, tmp_path):
    workdir = str(tmp_path / "ablation")
    results = ablation.run_ablation(
        catalog_shards, workdir, steps=4, variants=("no_global",), overrides=SMALL
    )

    references = ["untrained", "title_tfidf", "colour_histogram", "tfidf+histogram"]
    assert list(results) == references + ["no_global"]
    for name in references:
        assert results[name]["steps"] == 0
    for variant in ("no_global",):
        assert results[variant]["steps"] == 4
        assert sorted(results[variant]["validation_recall@1_curve"]) == [2, 4]
        assert results[variant]["best_validation_step"] in (2, 4)
        config = json.load(open(os.path.join(workdir, variant, "config.json")))
        assert config["model"]["hidden_dim"] == 32 and config["total_steps"] == 4
    assert (
        json.load(open(os.path.join(workdir, "no_global", "config.json")))["objectives"]
        == "itm,mlm,mim,contrastive"
    )

    table = open(os.path.join(workdir, "comparison.md")).read()
    main_rows = [line for line in table.splitlines() if line.startswith("| ")]
    names = [row.split(" | ")[0] for row in main_rows]
    assert names == (
        ["| model"]
        + [f"| {name}" for name in references + ["no_global"]]
        + ["| validation R@1 at step"]
        + [f"| {name}" for name in references + ["no_global"]]
    )
    assert "| validation R@1 at step | 0 | 2 | 4 |" in table
    untrained_curve_row = main_rows[7].split(" | ")
    assert untrained_curve_row[0] == "| untrained"
    assert untrained_curve_row[2:] == ["n/a", "n/a |"]  # Evaluated at step 0 only.
    variant_row = main_rows[5]
    assert variant_row.startswith("| no_global |")
    assert f"{results['no_global']['retrieval']['recall@1']:.4f}" in variant_row
    assert json.load(open(os.path.join(workdir, "comparison.json"))).keys() == results.keys()
    assert os.path.getsize(os.path.join(workdir, "recall_at_k.png")) > 0

    # A finished variant is only re-evaluated: same checkpoint, same numbers.
    again = ablation.run_ablation(
        catalog_shards, workdir, steps=4, variants=("no_global",), overrides=SMALL
    )
    assert again["no_global"]["retrieval"] == results["no_global"]["retrieval"]
    assert again["no_global"]["linear_probe"] == results["no_global"]["linear_probe"]


def test_unknown_variant_is_refused(catalog_shards, tmp_path):
    with pytest.raises(ValueError, match="unknown ablation variants.*'clip'"):
        ablation.run_ablation(catalog_shards, str(tmp_path), variants=("full", "clip"))


def test_missing_shards_are_named_before_anything_is_built(tmp_path, monkeypatch):
    def built(*args, **kwargs):
        raise AssertionError("the reference rows were built before the shards were checked")

    monkeypatch.setattr(ablation.protocol, "evaluate_references", built)
    with pytest.raises(FileNotFoundError, match="No 'train' shards in data directory"):
        ablation.run_ablation(str(tmp_path / "no_shards"), str(tmp_path), variants=("full",))


def test_the_seeing_variants_each_take_back_one_change_from_full():
    full = ablation_config.get_config("full")
    for variant, changes in (
        ("no_pair", {"contrastive.cross_views": ""}),
        ("linear_stem", {"model.patch_stem": "linear"}),
        # Negatives from every seller, and batches that hold every seller to draw them from.
        ("every_seller", {"same_seller_negatives": False, "data.seller_buckets": 0}),
    ):
        config = ablation_config.get_config(variant)
        for field, value in changes.items():
            *sections, name = field.split(".")
            section = config
            for part in sections:
                section = section[part]
            reference = full
            for part in sections:
                reference = reference[part]
            assert section[name] == value != reference[name]
            section[name] = reference[name]
        assert config.to_dict() == full.to_dict()
