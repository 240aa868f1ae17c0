"""Evaluation reports: metrics.json plus a readable report.md, and the ablation table.

A metrics dict may nest one level per evaluation; these section names are the ones the
comparison table reads (each holds the dict its function returns):

  retrieval             `retrieval.retrieval_metrics` on full listings
  retrieval_no_title    the same with every query's title removed
  retrieval_no_image    the same with every query's image removed
  linear_probe          `classification.linear_probe`
  knn                   `classification.knn_classify`
  linear_probe_no_title the linear probe on image-only embeddings (titles removed)
  itm                   `matching.itm_accuracy` on the split's fixed pairs
  references            reference name -> a metrics dict of its own (untrained encoder,
                        classical baselines); report.md shows them in one table

Nested keys are shown flattened with dots ("retrieval.recall@1"); flat dotted dicts work
as well.
"""

import json
import math
import os
from collections.abc import Mapping

import numpy as np

COMPARISON_COLUMNS = (
    ("R@1", "retrieval.recall@1"),
    ("R@5", "retrieval.recall@5"),
    ("R@10", "retrieval.recall@10"),
    ("mAP@R", "retrieval.map@r"),
    ("probe acc", "linear_probe.top1_accuracy"),
    ("probe F1", "linear_probe.macro_f1"),
    ("kNN acc", "knn.top1_accuracy"),
    ("kNN F1", "knn.macro_f1"),
    ("R@1 no-title", "retrieval_no_title.recall@1"),
    ("R@1 no-image", "retrieval_no_image.recall@1"),
    ("probe no-title", "linear_probe_no_title.top1_accuracy"),
    ("ITM acc", "itm.accuracy"),
)
MISSING = "n/a"


def write_report(metrics: Mapping, out_dir, *, title: str) -> tuple[str, str]:
    """Writes OUT_DIR/metrics.json (full precision) and OUT_DIR/report.md (a table).

    Returns:
      (json_path, markdown_path).
    """
    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, "metrics.json")
    markdown_path = os.path.join(out_dir, "report.md")
    plain = _json_ready(metrics)
    with open(json_path, "w") as f:
        json.dump(plain, f, indent=2, sort_keys=True)
        f.write("\n")
    lines = [f"# {title}", ""]
    references = plain.pop("references", None)
    if references:
        lines += [
            "Beside the reference rows (same splits, same protocol):",
            "",
            comparison_markdown({"trained": plain, **references}),
            "",
        ]
    lines += ["| metric | value |", "|---|---|"]
    lines += [
        f"| {name} | {format_value(value)} |" for name, value in flatten_metrics(plain).items()
    ]
    with open(markdown_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return json_path, markdown_path


def comparison_markdown(rows: Mapping[str, Mapping]) -> str:
    """The comparison table (one row per model, COMPARISON_COLUMNS) as markdown text.

    Args:
      rows: model name -> its metrics dict (nested by section or flat with dotted keys). A
        metric a model lacks reads "n/a".
    """
    if not rows:
        raise ValueError("a comparison table needs at least one model")
    headers = ["model"] + [header for header, _ in COMPARISON_COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for model_name, metrics in rows.items():
        flat = flatten_metrics(_json_ready(metrics))
        cells = [model_name] + [
            format_value(flat.get(key, MISSING)) for _, key in COMPARISON_COLUMNS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_comparison_table(rows: Mapping[str, Mapping], path) -> str:
    """Writes `comparison_markdown(rows)` to `path` and returns the path."""
    table = comparison_markdown(rows)
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        f.write(table)
    return path


def validation_curve_table(
    curves: Mapping[str, Mapping[int, float]], metric: str = "validation R@1"
) -> str:
    """A markdown table of a metric over training: one row per model, one column per step.

    Args:
      curves: model name -> {step: value}; a step a model was not evaluated at reads "n/a".
      metric: what the values are, for the header.
    """
    steps = sorted({step for curve in curves.values() for step in curve})
    if not steps:
        raise ValueError("validation_curve_table needs at least one evaluated step")
    headers = [f"{metric} at step"] + [str(step) for step in steps]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for model_name, curve in curves.items():
        cells = [format_value(curve.get(step, MISSING)) for step in steps]
        lines.append("| " + " | ".join([model_name] + cells) + " |")
    return "\n".join(lines) + "\n"


def flatten_metrics(metrics: Mapping, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}, in insertion order."""
    flat = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def format_value(value) -> str:
    """4 decimals for floats, integers as they are, lists shortened."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    if isinstance(value, list):
        shown = ", ".join(format_value(item) for item in value[:5])
        return f"[{shown}{', ...' if len(value) > 5 else ''}] ({len(value)} values)"
    return str(value)


def _json_ready(value):
    """numpy scalars and arrays -> plain Python, recursively; NaN stays NaN."""
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if hasattr(value, "__array__") and getattr(value, "shape", None) is not None:
        return _json_ready(np.asarray(value))
    return value
