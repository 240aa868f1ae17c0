"""Category linear probe on frozen embeddings, fitted on the train split and scored on the
scored split (top-1 accuracy, macro-F1; `item_jax/evaluation/classification.py`); and the
same probe on image-only embeddings (every title removed, train and scored split alike):
what the model knows of a product from its photo.
"""

from item_jax.evaluation import classification
from item_jax.evaluation.evaluators.inputs import EvaluationInputs


def run(inputs: EvaluationInputs) -> dict:
    """{"linear_probe", "linear_probe_no_title"}, each where both splits were so embedded."""
    train, split, metrics = inputs.train, inputs.split, {}
    if train is None:
        return metrics
    if train.full is not None:
        metrics["linear_probe"] = classification.linear_probe(
            train.full,
            train.categories,
            split.full,
            split.categories,
            num_classes=inputs.num_classes,
        )
    # The trainer's validation may find no train listing to fit on; the report's pass has some.
    if train.without_title is not None and split.without_title is not None and len(train.groups):
        metrics["linear_probe_no_title"] = classification.linear_probe(
            train.without_title,
            train.categories,
            split.without_title,
            split.categories,
            num_classes=inputs.num_classes,
        )
    return metrics
