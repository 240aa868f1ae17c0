"""Same-product retrieval: every listing of the scored split whose product has another
listing queries all the others; Recall@1/5/10 and mAP@R (`item_jax/evaluation/retrieval.py`).
"""

from item_jax.evaluation.evaluators.inputs import EvaluationInputs


def run(inputs: EvaluationInputs) -> dict:
    """{"retrieval": the metrics of full listings against the full split}."""
    return {"retrieval": inputs.full_retrieval()}
