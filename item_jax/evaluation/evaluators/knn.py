"""Category prediction by cosine k-NN (k = 10, or the train rows if fewer) from the train
split's full-listing embeddings (`item_jax/evaluation/classification.py`).
"""

from item_jax.evaluation import classification
from item_jax.evaluation.evaluators.inputs import EvaluationInputs


def run(inputs: EvaluationInputs) -> dict:
    """{"knn": top-1 accuracy and macro-F1}; nothing without full train embeddings."""
    train, split = inputs.train, inputs.split
    if train is None or train.full is None:
        return {}
    return {
        "knn": classification.knn_classify(
            train.full,
            train.categories,
            split.full,
            split.categories,
            num_classes=inputs.num_classes,
            k=min(10, len(train.full)),
        )
    }
