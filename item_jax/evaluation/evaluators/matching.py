"""Image-text matching: the ITM head's accuracy on the scored split's fixed draw of pairs,
each listing with its own photo and with another group's (`item_jax/evaluation/matching.py`).
"""

from item_jax.evaluation import matching
from item_jax.evaluation.evaluators.inputs import EvaluationInputs


def run(inputs: EvaluationInputs) -> dict:
    """{"itm": accuracies and the pair count}; nothing for an embedder without an ITM head."""
    if inputs.matcher is None or inputs.pairs is None:
        return {}
    return {"itm": matching.itm_accuracy(inputs.matcher, inputs.pairs)}
