"""The reference rows: the same encoder untrained (step 0), title TF-IDF, a colour histogram
and the two concatenated (`item_jax/evaluation/baselines.py`), embedded in the same pass as
the model and scored by the same chosen evaluators (docs/design.md, "Reference rows").
"""

from item_jax import train_step
from item_jax.data import input_pipeline, readable_records
from item_jax.evaluation import baselines
from item_jax.evaluation.evaluators import registry
from item_jax.evaluation.evaluators.inputs import (
    Embedder,
    EvaluationInputs,
    baseline_embedder,
    model_embedder,
)
from item_jax.model import model_from_config

UNTRAINED = "untrained"


def untrained_params(config):
    """The reference encoder: the same config at step 0."""
    return train_step.initial_params(model_from_config(config.model), config.seed)


def reference_embedders(
    config, data_dir: str, max_train_examples: int, untrained=None
) -> dict[str, Embedder]:
    """The untrained encoder (`untrained`, else the same config at step 0) and the baselines."""
    train_titles = input_pipeline.read_titles(
        data_dir,
        "train",
        max_examples=max_train_examples,
        readable=readable_records.of_split(data_dir, "train", readable_records.mode_of(config)),
    )
    untrained = untrained_params(config) if untrained is None else untrained
    embedders = {UNTRAINED: model_embedder(untrained, config)}
    for baseline in baselines.fit_baselines(train_titles):
        embedders[baseline.name] = baseline_embedder(baseline)
    return embedders


def run(inputs: EvaluationInputs) -> dict:
    """{"references": {name: the other chosen evaluators' metrics of that row}}."""
    if not inputs.references:
        return {}
    others = [name for name in inputs.evaluators if name != "references"]
    return {
        "references": {
            name: registry.run(others, reference) for name, reference in inputs.references.items()
        }
    }
