"""The evaluation command: every metric section, the report and plots, modality removal."""

import json
import os

import numpy as np

from item_jax import checkpoint
from item_jax.evaluation import protocol


def test_evaluate_writes_metrics_report_and_plots(trained_workdir, catalog_shards, tmp_path):
  config, params, _ = checkpoint.restore_trained_params(trained_workdir)
  out = str(tmp_path / "eval")
  metrics = protocol.evaluate_params(params, config, catalog_shards, out_dir=out)
  for section in ("retrieval", "retrieval_no_title", "retrieval_no_image", "linear_probe",
                  "knn", "modality_balance"):
    assert section in metrics, section
  retrieval = metrics["retrieval"]
  assert 0.0 <= retrieval["recall@1"] <= retrieval["recall@5"] <= retrieval["recall@10"] <= 1.0
  assert retrieval["num_queries"] > 0
  balance = metrics["modality_balance"]
  assert balance["recall@1_drop_without_title"] == (
      retrieval["recall@1"] - metrics["retrieval_no_title"]["recall@1"])
  with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
    assert json.load(f)["retrieval"]["recall@1"] == retrieval["recall@1"]
  for name in ("report.md", "report.html", "recall_at_k.png", "embedding_map.png",
               "similarity_distributions.png"):
    with open(os.path.join(out, name), "rb") as f:
      head = f.read(8)
    assert head if name.endswith((".md", ".html")) else head == b"\x89PNG\r\n\x1a\n", name
  assert "same-product search" in protocol.format_summary(metrics)


def test_removed_modalities_change_the_query_embeddings(trained_workdir, catalog_shards):
  config, params, _ = checkpoint.restore_trained_params(trained_workdir)
  split = protocol.embed_split(params, config, catalog_shards, "test")
  assert split.full.shape == split.without_title.shape == split.without_image.shape
  assert np.abs(split.full - split.without_title).max() > 1e-4
  assert np.abs(split.full - split.without_image).max() > 1e-4
  assert len(set(split.ids)) == len(split.ids) == len(split.full)


def test_validation_evaluator_returns_flat_floats(trained_workdir, catalog_shards):
  config, params, _ = checkpoint.restore_trained_params(trained_workdir)
  metrics = protocol.make_validation_evaluator(config, catalog_shards)(params, 6)
  assert "retrieval.recall@1" in metrics and "retrieval_no_image.recall@1" in metrics
  assert all(isinstance(v, float) for v in metrics.values())
