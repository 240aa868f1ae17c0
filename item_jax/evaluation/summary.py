"""The console summary of an evaluation: the headline figures, then the model beside each
reference row and a one-line verdict (what `python -m item_jax.cli.evaluate` prints).
"""

from item_jax.evaluation import report

TRAINED = "trained"
UNTRAINED = "untrained"

SUMMARY_COLUMNS = (
    ("R@1", "retrieval.recall@1"),
    ("R@10", "retrieval.recall@10"),
    ("mAP@R", "retrieval.map@r"),
    ("probe", "linear_probe.top1_accuracy"),
    ("kNN", "knn.top1_accuracy"),
    ("R@1 -title", "retrieval_no_title.recall@1"),
    ("R@1 -image", "retrieval_no_image.recall@1"),
    ("probe -title", "linear_probe_no_title.top1_accuracy"),
    ("ITM acc", "itm.accuracy"),
)


def format_summary(metrics: dict) -> str:
    """The few lines a person reads first: the model, then each reference row beside it.

    A section that `config.evaluators` left out leaves out its line (and reads nan in the
    table).
    """
    lines = []
    r = metrics.get("retrieval")
    if r is not None:
        lines.append(
            f"same-product search: R@1={r['recall@1']:.3f} R@5={r['recall@5']:.3f} "
            f"R@10={r['recall@10']:.3f} mAP@R={r['map@r']:.3f} ({r['num_queries']} queries)"
        )
    category = []
    if "linear_probe" in metrics:
        probe = metrics["linear_probe"]
        category.append(f"probe acc={probe['top1_accuracy']:.3f} F1={probe['macro_f1']:.3f}")
    if "knn" in metrics:
        knn = metrics["knn"]
        category.append(f"kNN acc={knn['top1_accuracy']:.3f} F1={knn['macro_f1']:.3f}")
    if category:
        lines.append("category: " + "; ".join(category))
    balance = metrics.get("modality_balance", {})
    if balance:
        lines.append(
            "modality balance (R@1 drop): "
            + ", ".join(
                f"{key.replace('recall@1_drop_without_', 'without ')}={value:+.3f}"
                for key, value in balance.items()
            )
        )
    references = metrics.get("references")
    if references:
        rows = {TRAINED: metrics, **references}
        width = max(len(name) for name in rows)
        lines.append("")
        lines.append(
            f"{'':{width}}  " + "  ".join(f"{header:>10}" for header, _ in SUMMARY_COLUMNS)
        )
        for name, row in rows.items():
            flat = report.flatten_metrics(row)
            lines.append(
                f"{name:{width}}  "
                + "  ".join(f"{flat.get(key, float('nan')):10.3f}" for _, key in SUMMARY_COLUMNS)
            )
        lines.append(_verdict(metrics, references))
    return "\n".join(lines)


def _verdict(metrics: dict, references: dict) -> str:
    """One line: did pretraining help, and how far is the model from the title search."""
    parts = []
    flat = report.flatten_metrics(metrics)
    r1 = flat.get("retrieval.recall@1", float("nan"))
    probe = flat.get("linear_probe.top1_accuracy", float("nan"))
    if UNTRAINED in references:
        base = report.flatten_metrics(references[UNTRAINED])
        parts.append(
            f"vs untrained: R@1 {r1 - base.get('retrieval.recall@1', float('nan')):+.3f}, probe "
            f"{probe - base.get('linear_probe.top1_accuracy', float('nan')):+.3f}"
        )
    if "title_tfidf" in references:
        tfidf = report.flatten_metrics(references["title_tfidf"])
        parts.append(
            f"vs title TF-IDF: R@1 {r1 - tfidf.get('retrieval.recall@1', float('nan')):+.3f}"
        )
    return "; ".join(parts)
