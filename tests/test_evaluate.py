"""The evaluation command: every metric section, the report and plots, modality removal."""

import json
import os

import numpy as np

from item_jax import train_step
from item_jax.evaluation import protocol


def test_evaluate_writes_metrics_report_and_plots(trained_workdir, catalog_shards, tmp_path):
    config, params, _ = train_step.restore_trained_params(trained_workdir)
    out = str(tmp_path / "eval")
    metrics = protocol.evaluate_params(params, config, catalog_shards, out_dir=out)
    for section in (
        "retrieval",
        "retrieval_no_title",
        "retrieval_no_image",
        "linear_probe",
        "knn",
        "modality_balance",
        "linear_probe_no_title",
        "itm",
    ):
        assert section in metrics, section
    # ITM is scored on both halves of the fixed pairs; the untrained head (zero-initialised)
    # answers one way for every pair: exactly chance.
    itm = metrics["itm"]
    assert itm["num_pairs"] > 0 and itm["num_pairs"] % 2 == 0
    assert itm["accuracy"] == (itm["matched_accuracy"] + itm["mismatched_accuracy"]) / 2
    assert metrics["references"]["untrained"]["itm"]["accuracy"] == 0.5
    assert "itm" not in metrics["references"]["colour_histogram"]
    # The image-only probe reads embeddings without titles: title TF-IDF has nothing left.
    tfidf = metrics["references"]["title_tfidf"]
    assert tfidf["linear_probe_no_title"]["top1_accuracy"] < tfidf["linear_probe"]["top1_accuracy"]
    retrieval = metrics["retrieval"]
    assert 0.0 <= retrieval["recall@1"] <= retrieval["recall@5"] <= retrieval["recall@10"] <= 1.0
    assert retrieval["num_queries"] > 0
    balance = metrics["modality_balance"]
    assert balance["recall@1_drop_without_title"] == (
        retrieval["recall@1"] - metrics["retrieval_no_title"]["recall@1"]
    )
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        assert json.load(f)["retrieval"]["recall@1"] == retrieval["recall@1"]
    for name in (
        "report.md",
        "report.html",
        "recall_at_k.png",
        "embedding_map.png",
        "similarity_distributions.png",
    ):
        with open(os.path.join(out, name), "rb") as f:
            head = f.read(8)
        assert head if name.endswith((".md", ".html")) else head == b"\x89PNG\r\n\x1a\n", name
    summary = protocol.format_summary(metrics)
    assert "same-product search" in summary and "probe -title" in summary and "ITM acc" in summary


def test_removed_modalities_change_the_query_embeddings(trained_workdir, catalog_shards):
    config, params, _ = train_step.restore_trained_params(trained_workdir)
    split = protocol.embed_split(params, config, catalog_shards, "test")
    assert split.full.shape == split.without_title.shape == split.without_image.shape
    assert np.abs(split.full - split.without_title).max() > 1e-4
    assert np.abs(split.full - split.without_image).max() > 1e-4
    assert len(set(split.ids)) == len(split.ids) == len(split.full)


def test_validation_evaluator_returns_flat_floats(trained_workdir, catalog_shards):
    config, params, _ = train_step.restore_trained_params(trained_workdir)
    metrics = protocol.make_validation_evaluator(config, catalog_shards)(params, 6)
    assert "retrieval.recall@1" in metrics and "retrieval_no_image.recall@1" in metrics
    assert 0.0 <= metrics["itm.accuracy"] <= 1.0 and metrics["itm.num_pairs"] > 0
    assert 0.0 <= metrics["linear_probe_no_title.top1_accuracy"] <= 1.0
    assert metrics["references.untrained.itm.accuracy"] == 0.5
    assert "references.colour_histogram.linear_probe_no_title.top1_accuracy" in metrics
    assert all(isinstance(v, float) for v in metrics.values())
