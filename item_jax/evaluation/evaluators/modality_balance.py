"""Modality balance: the same retrieval with each query's title removed, and with its image
removed (through the attention masks), against the full gallery; the drops in Recall@1 say
how much the embedding leans on each modality.
"""

from item_jax.evaluation.evaluators.inputs import EvaluationInputs, retrieval_against_split


def run(inputs: EvaluationInputs) -> dict:
    """{"retrieval_no_title", "retrieval_no_image", "modality_balance": the R@1 drops}."""
    split = inputs.split
    metrics = {}
    for name, queries in (
        ("retrieval_no_title", split.without_title),
        ("retrieval_no_image", split.without_image),
    ):
        if queries is not None:
            metrics[name] = retrieval_against_split(split, queries)
    full_r1 = inputs.full_retrieval()["recall@1"]
    metrics["modality_balance"] = {
        f"recall@1_drop_without_{name.rsplit('_', 1)[1]}": full_r1 - metrics[name]["recall@1"]
        for name in ("retrieval_no_title", "retrieval_no_image")
        if name in metrics
    }
    return metrics
