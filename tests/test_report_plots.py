"""Evaluation reports (metrics.json, report.md, the ablation table) and the PNG figures."""

import json

import numpy as np
import pytest
from PIL import Image

from item_jax.evaluation import plots, report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def example_metrics() -> dict:
    return {
        "retrieval": {
            "recall@1": np.float32(0.625),
            "recall@5": 0.8125,
            "recall@10": 0.875,
            "map@r": 0.53125,
            "num_queries": np.int64(16),
        },
        "linear_probe": {"top1_accuracy": 0.75, "macro_f1": float("nan")},
        "curve": np.array([0.5, 0.75]),
    }


def test_write_report_holds_the_numbers(tmp_path):
    json_path, markdown_path = report.write_report(
        example_metrics(), tmp_path / "eval", title="Run 7"
    )
    with open(json_path, encoding="utf-8") as f:
        written = json.load(f)
    assert written["retrieval"]["recall@1"] == 0.625
    assert written["retrieval"]["num_queries"] == 16
    assert np.isnan(written["linear_probe"]["macro_f1"])
    assert written["curve"] == [0.5, 0.75]
    with open(markdown_path, encoding="utf-8") as f:
        markdown = f.read()
    assert markdown.startswith("# Run 7\n")
    assert "| retrieval.recall@1 | 0.6250 |" in markdown
    assert "| retrieval.map@r | 0.5312 |" in markdown
    assert "| retrieval.num_queries | 16 |" in markdown
    assert "| linear_probe.macro_f1 | nan |" in markdown
    assert "| curve | [0.5000, 0.7500] (2 values) |" in markdown


def test_comparison_table_has_one_row_per_model(tmp_path):
    rows = {
        "ITEm": example_metrics(),
        # Flat dotted keys work as well; this model has no probe or k-NN results.
        "text only": {"retrieval.recall@1": 0.25, "retrieval_no_image.recall@1": 0.125},
    }
    path = report.write_comparison_table(rows, tmp_path / "tables" / "ablation.md")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert len(lines) == 2 + len(rows)
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["model"] + [name for name, _ in report.COMPARISON_COLUMNS]
    cells = {
        line.split("|")[1].strip(): dict(
            zip(header, (cell.strip() for cell in line.strip("|").split("|")))
        )
        for line in lines[2:]
    }
    assert cells["ITEm"]["R@1"] == "0.6250"
    assert cells["ITEm"]["mAP@R"] == "0.5312"
    assert cells["ITEm"]["probe acc"] == "0.7500"
    assert cells["ITEm"]["kNN acc"] == report.MISSING
    assert cells["text only"]["R@1"] == "0.2500"
    assert cells["text only"]["R@1 no-image"] == "0.1250"
    assert cells["text only"]["probe F1"] == report.MISSING
    assert cells["text only"]["R@5"] == report.MISSING


def test_comparison_table_needs_a_model(tmp_path):
    with pytest.raises(ValueError, match="at least one model"):
        report.write_comparison_table({}, tmp_path / "empty.md")


def test_flatten_metrics_joins_nested_keys_in_order():
    assert report.flatten_metrics({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {
        "a.b": 1,
        "a.c.d": 2,
        "e": 3,
    }


def test_recall_curve_plot_is_a_png(tmp_path):
    curves = {
        "full listing": np.linspace(0.5, 0.9, 20),
        "query without title": np.linspace(0.3, 0.8, 20),
    }
    path = plots.plot_recall_curves(curves, tmp_path / "plots" / "recall.png")
    assert_real_png(path)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        plots.plot_recall_curves({"broken": np.zeros((2, 2))}, tmp_path / "broken.png")


def test_embedding_projection_plot_is_a_png(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 25, size=400)  # More categories than colours, and unlabelled.
    embeddings = rng.normal(size=(400, 8)) + np.eye(25, 8)[np.maximum(labels, 0)] * 4
    names = [f"category {index}" for index in range(25)]
    path = plots.plot_embedding_projection(
        embeddings, labels, names, tmp_path / "projection.png", max_points=300
    )
    assert_real_png(path)
    with pytest.raises(ValueError, match="has no name"):
        plots.plot_embedding_projection(embeddings, labels, names[:10], tmp_path / "bad.png")


def test_similarity_distribution_plot_is_a_png(tmp_path):
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 3)
    embeddings = rng.normal(size=(40, 16))[groups] + 0.3 * rng.normal(size=(120, 16))
    path = plots.plot_similarity_distributions(
        embeddings, groups, tmp_path / "similarity.png", max_pairs=50
    )
    assert_real_png(path)
    embeddings[4] = 0
    with pytest.raises(ValueError, match="finite and non-zero"):
        plots.plot_similarity_distributions(embeddings, groups, tmp_path / "bad.png")


@pytest.mark.parametrize("max_pairs", [5, 1000])
def test_same_group_pairs_are_distinct_members_of_one_group(max_pairs):
    # Groups 5 and 1 have 3 pairs each, group 2 one: 1000 lists all 7, 5 draws a sample.
    groups = np.array([5, 1, 5, 2, 1, 5, 9, 1, 2])
    first, second = plots._same_group_pairs(  # pylint: disable=protected-access
        groups, max_pairs, np.random.default_rng(0)
    )
    assert len(first) == min(max_pairs, 3 + 3 + 1)
    assert np.all(first != second)
    np.testing.assert_array_equal(groups[first], groups[second])
    again = plots._same_group_pairs(  # pylint: disable=protected-access
        groups, max_pairs, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(np.stack([first, second]), np.stack(again))


def assert_real_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    with Image.open(path) as image:
        image.load()
        assert image.width > 100 and image.height > 100
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 1


def test_validation_curve_table_aligns_steps_across_models():
    table = report.validation_curve_table({"untrained": {0: 0.5}, "full": {125: 0.25, 250: 0.125}})
    assert table.splitlines() == [
        "| validation R@1 at step | 0 | 125 | 250 |",
        "|---|---|---|---|",
        "| untrained | 0.5000 | n/a | n/a |",
        "| full | n/a | 0.2500 | 0.1250 |",
    ]
    with pytest.raises(ValueError, match="at least one evaluated step"):
        report.validation_curve_table({"full": {}})
