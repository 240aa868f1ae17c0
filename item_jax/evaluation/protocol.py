"""Downstream evaluation of an ITEm embedding (docs/design.md, "Evaluation protocol"): the
orchestration behind `python -m item_jax.cli.evaluate` and the trainer's periodic validation.

It embeds the converter's splits once (product groups never cross splits; `evaluators/
inputs.py`), runs the evaluators that `config.evaluators` names on them (`evaluators/
registry.py`) and writes the outputs. The evaluators, all chosen by default:
  * `retrieval`: same-product retrieval on the test split (unseen products): every listing
    whose group has another member queries all other test listings; Recall@1/5/10, mAP@R;
  * `probe`, `knn`: category prediction on frozen embeddings: a linear probe and cosine
    k-NN, fitted on the train split and scored on the test split; top-1 accuracy and
    macro-F1; and the same linear probe on image-only embeddings (every title removed,
    train and test): what the model knows of a product from its photo;
  * `matching`: image-text matching: the ITM head's accuracy on a fixed draw of test pairs,
    each listing with its own photo and with another group's (`matching.py`);
  * `modality_balance`: the same retrieval with each query's title removed, and with its
    image removed (through the attention masks), against the full gallery; the drops in
    Recall@1 say how much the embedding leans on each modality;
  * `references`: the reference rows, scored by the same evaluators in the same pass
    (docs/design.md, "Reference rows"): the same encoder untrained (step 0), title TF-IDF,
    a colour histogram and the two concatenated (`baselines.py`).
Writes metrics.json, report.md, report.html (`html_report.py`: what the model retrieves,
beside title TF-IDF) and PNG plots to --out; `summary.py` formats the console table.
`make_validation_evaluator` runs the same evaluators on the validation split, periodically
in the trainer; in a job of many processes (a pod) every process reads the same validation
batches, embeds the rows of its own devices (`item_jax/embedding.py`), receives all rows
back, and the figures equal a single process's. Every split is read as
`config.data.on_corrupt_record` says (`item_jax/data/readable_records.py`: in skip mode,
the records the trainer left out are left out here too, and counted in `metrics["data"]`).
"""

import copy
import os
from collections.abc import Callable

import jax
import numpy as np
from absl import logging

from item_jax import batch as batch_lib
from item_jax import embedding, sharding
from item_jax.data import dataset_info, readable_records
from item_jax.evaluation import html_report, matching, plots, report, retrieval
from item_jax.evaluation.evaluators import references, registry
from item_jax.evaluation.evaluators.inputs import (
    Embedder,
    EvaluationInputs,
    SplitEmbeddings,
    baseline_embedder,
    embed_split_with,
    model_embedder,
    model_matcher,
    retrieval_against_split,
)
from item_jax.evaluation.summary import SUMMARY_COLUMNS, format_summary
from item_jax.model import AUTO_TITLE_POOLING

# What the commands and the tests import from here; the embedding helpers and the console
# summary live in `evaluators/inputs.py` and `summary.py`.
__all__ = [
    "Embedder",
    "SUMMARY_COLUMNS",
    "SplitEmbeddings",
    "baseline_embedder",
    "embed_split",
    "embed_split_with",
    "evaluate_embedders",
    "evaluate_params",
    "evaluate_references",
    "format_summary",
    "make_validation_evaluator",
    "model_embedder",
    "model_matcher",
    "write_outputs",
]

REMOVALS = batch_lib.REMOVALS
TRAINED = "trained"
UNTRAINED = references.UNTRAINED
# Train listings whose image-only embeddings fit the trainer's periodic image-only probe.
VALIDATION_PROBE_TRAIN_EXAMPLES = 2000
# The evaluators that read the train split: without them it is not embedded at all.
FITTED_ON_TRAIN = ("probe", "knn")


def embed_split(
    params,
    config,
    data_dir: str,
    split: str,
    *,
    removals=REMOVALS,
    batch_size: int = 64,
    max_examples: int | None = None,
    embed_fn: Callable | None = None,
) -> SplitEmbeddings:
    """The model's embeddings of a split, once per requested removal."""
    return embed_split_with(
        {TRAINED: model_embedder(params, config, embed_fn)},
        config,
        data_dir,
        split,
        removals=removals,
        batch_size=batch_size,
        max_examples=max_examples,
    )[TRAINED]


def _with_references(names, with_references: bool) -> tuple[str, ...]:
    """The chosen evaluators, less `references` when the caller asks for no reference rows."""
    return tuple(name for name in names if with_references or name != "references")


def evaluate_embedders(
    embedders: dict[str, Embedder],
    config,
    data_dir: str,
    *,
    max_train_examples: int = 50_000,
    matchers: dict[str, matching.Matcher] | None = None,
    evaluators: tuple[str, ...] | None = None,
) -> dict[str, tuple[dict, SplitEmbeddings]]:
    """Every chosen evaluator on every embedder: {name: (metrics, test embeddings)}.

    The test split (and, for the probes, the train split) is embedded once, in one pass for
    all embedders. `matchers` (name -> ITM logits) give `matching` its matcher; the
    reference rows are embedders here like any other (no `references` section).
    """
    names = _with_references(evaluators or registry.of_config(config), False)
    inputs = _test_inputs(embedders, config, data_dir, names, max_train_examples, matchers)
    return {name: (registry.run(names, inputs[name]), inputs[name].split) for name in embedders}


def _train_split(embedders, config, data_dir, names, removals, max_examples):
    """The train split embedded for the evaluators that fit on it; {} when none is chosen."""
    if not any(name in FITTED_ON_TRAIN for name in names):
        return {}
    return embed_split_with(
        embedders, config, data_dir, "train", removals=removals, max_examples=max_examples
    )


def _test_inputs(
    embedders, config, data_dir, names, max_train_examples, matchers
) -> dict[str, EvaluationInputs]:
    """Each embedder's inputs for the evaluation on the test split, embedded in one pass."""
    info = dataset_info.load_dataset_info(data_dir)
    pairs = matching.PairSource()
    test = embed_split_with(embedders, config, data_dir, "test", pair_source=pairs)
    train = _train_split(embedders, config, data_dir, names, (None, "title"), max_train_examples)
    num_classes = max(len(info["categories"]), 1)
    left_out = _left_out(config, data_dir, ("test", "train"))
    return {
        name: EvaluationInputs(
            split=test[name],
            train=train.get(name),
            num_classes=num_classes,
            pairs=pairs,
            matcher=(matchers or {}).get(name),
            data=dict(
                dir=os.path.abspath(data_dir),
                num_test=len(test[name].ids),
                num_train_for_probe=len(train[name].ids) if name in train else 0,
                **left_out,
            ),
            evaluators=names,
        )
        for name in embedders
    }


def _left_out(config, data_dir: str, splits: tuple[str, ...]) -> dict:
    """Skip mode: the records left out of each split (as its readers left them out)."""
    mode = readable_records.mode_of(config)
    if mode != "skip":
        return {}
    return {
        f"records_left_out_{split}": readable_records.of_split(data_dir, split, mode).num_left_out
        for split in splits
    }


def _reference_rows(config, data_dir: str, max_train_examples: int, match_fn=None):
    """The reference rows' embedders and the untrained encoder's ITM matcher."""
    untrained = references.untrained_params(config)
    embedders = references.reference_embedders(config, data_dir, max_train_examples, untrained)
    return embedders, {UNTRAINED: model_matcher(untrained, config, match_fn)}


def evaluate_references(
    config, data_dir: str, *, max_train_examples: int = 50_000
) -> dict[str, dict]:
    """{reference name: metrics}: the untrained encoder and the classical baselines."""
    embedders, matchers = _reference_rows(config, data_dir, max_train_examples)
    results = evaluate_embedders(
        embedders, config, data_dir, max_train_examples=max_train_examples, matchers=matchers
    )
    return {name: metrics for name, (metrics, _) in results.items()}


def evaluate_params(
    params,
    config,
    data_dir: str,
    *,
    out_dir: str | None = None,
    title: str = "ITEm evaluation",
    max_train_examples: int = 50_000,
    with_references: bool = True,
) -> dict:
    """Every metric of the evaluators `config.evaluators` names; with `out_dir`, the report.

    With `with_references` (and `references` chosen), `metrics["references"]` holds the
    same metrics of the untrained encoder and of the classical baselines
    (`item_jax/evaluation/baselines.py`), computed in the same pass over the same splits.
    """
    names = _with_references(registry.of_config(config), with_references)
    embedders = {TRAINED: model_embedder(params, config)}
    matchers = {TRAINED: model_matcher(params, config)}
    if "references" in names:
        reference_embedders, reference_matchers = _reference_rows(
            config, data_dir, max_train_examples
        )
        embedders.update(reference_embedders)
        matchers.update(reference_matchers)
    inputs = _test_inputs(embedders, config, data_dir, names, max_train_examples, matchers)
    trained = inputs.pop(TRAINED)
    trained.references = inputs
    metrics = registry.run(names, trained)
    if out_dir:
        write_outputs(
            metrics,
            trained.split,
            dataset_info.load_dataset_info(data_dir),
            out_dir,
            title,
            data_dir=data_dir,
            references={name: reference.split for name, reference in inputs.items()},
        )
    return metrics


def write_outputs(
    metrics: dict,
    test: SplitEmbeddings,
    info: dict,
    out_dir: str,
    title: str,
    *,
    data_dir: str | None = None,
    references: dict[str, SplitEmbeddings] | None = None,
) -> None:
    """metrics.json, report.md, the plots and (given `data_dir`, the shards) report.html.

    Adds the Recall@k curve, the plots' paths and the HTML report's counts to `metrics`;
    `references` holds the reference rows' test embeddings (title TF-IDF's is the HTML
    gallery's second column).
    """
    os.makedirs(out_dir, exist_ok=True)
    self_index = np.arange(len(test.groups))
    curves = {
        "full listing": retrieval.recall_at_k_curve(
            test.full,
            test.groups,
            test.full,
            test.groups,
            query_gallery_index=self_index,
            max_k=min(50, max(len(test.groups) - 1, 1)),
        )
    }
    for label, queries in (
        ("query without title", test.without_title),
        ("query without image", test.without_image),
    ):
        curves[label] = retrieval.recall_at_k_curve(
            queries,
            test.groups,
            test.full,
            test.groups,
            query_gallery_index=self_index,
            max_k=len(curves["full listing"]),
        )
    metrics["recall_at_k_curve"] = [float(value) for value in curves["full listing"]]
    metrics["plots"] = {
        "recall_curves": plots.plot_recall_curves(curves, os.path.join(out_dir, "recall_at_k.png")),
        "similarities": plots.plot_similarity_distributions(
            test.full, test.groups, os.path.join(out_dir, "similarity_distributions.png")
        ),
    }
    if data_dir is not None:  # The page shows photos and titles, read back from the shards.
        html_report.write_html_report(
            metrics, test, info, out_dir, title, data_dir=data_dir, references=references or {}
        )
    report.write_report(metrics, out_dir, title=title)


def make_validation_evaluator(
    config, data_dir: str, *, with_references: bool = True
) -> Callable[[dict, int], dict]:
    """`evaluate(params, step) -> flat metrics` on the validation split, for the training loop.

    Each call runs the evaluators of `config.evaluators` on the validation split, with what
    a periodic check can afford: same-product retrieval (with the modality balance), the
    ITM head's accuracy on the validation split's fixed pairs (`itm.*`), and the linear
    probe of the category on image-only embeddings only (`linear_probe_no_title.*`, fitted
    on the image-only embeddings of up to VALIDATION_PROBE_TRAIN_EXAMPLES train listings;
    the train split is not embedded whole, so `knn` and the full-listing probe are left out).

    With `with_references` (and `references` chosen), the first call also embeds the
    validation split with the reference embedders, logs their figures, and adds them to its
    metrics as `references.NAME.retrieval.recall@1` (and the other flat keys), so that the
    run's metrics.jsonl holds the curve and what it is to be compared with.
    """
    names = _with_references(registry.of_config(config), with_references)
    # A pod embeds over the training mesh (every process its own devices' rows); one process
    # over its local devices, where the trainer's parameters already are.
    mesh = sharding.make_mesh(config.mesh) if jax.process_count() > 1 else None
    embed_fn = embedding.make_embed_fn(config.model, mesh)
    match_fn = embedding.make_match_fn(config.model, mesh)
    num_classes = max(len(dataset_info.load_dataset_info(data_dir)["categories"]), 1)
    pending_references = ["references" in names]
    # Under "auto" the trained embedding pools the title by the mean; the `[CLS]` pooling is
    # the other candidate, embedded beside it.
    cls_candidate = None
    if config.model.title_pooling == AUTO_TITLE_POOLING:
        cls_config = copy.deepcopy(config)
        cls_config.model.title_pooling = "cls"
        cls_candidate = (cls_config, embedding.make_embed_fn(cls_config.model, mesh))

    def evaluate(params, step):  # pylint: disable=unused-argument
        embedders = {TRAINED: model_embedder(params, config, embed_fn)}
        matchers = {TRAINED: model_matcher(params, config, match_fn)}
        if pending_references[0]:
            reference_embedders, reference_matchers = _reference_rows(
                config, data_dir, 50_000, match_fn
            )
            embedders.update(reference_embedders)
            matchers.update(reference_matchers)
            pending_references[0] = False
        pairs = matching.PairSource()
        splits = embed_split_with(embedders, config, data_dir, "validation", pair_source=pairs)
        if len(splits[TRAINED].ids) < 2:
            return {}
        train = _train_split(
            embedders, config, data_dir, names, ("title",), VALIDATION_PROBE_TRAIN_EXAMPLES
        )
        inputs = {
            name: EvaluationInputs(
                split=split,
                train=train.get(name),
                num_classes=num_classes,
                pairs=pairs,
                matcher=matchers.get(name),
                evaluators=names,
            )
            for name, split in splits.items()
        }
        trained = inputs.pop(TRAINED)
        trained.data = _left_out(config, data_dir, ("validation",))
        trained.references = inputs
        metrics = {
            key: float(value)
            for key, value in report.flatten_metrics(registry.run(names, trained)).items()
            if isinstance(value, (int, float)) and not key.endswith("num_gallery")
        }
        for name in inputs:
            _log_reference(name, metrics, f"references.{name}.")
        metrics.update(_title_pooling_recalls(params, cls_candidate, splits[TRAINED], data_dir))
        return metrics

    return evaluate


def _title_pooling_recalls(
    params, cls_candidate, mean_split: SplitEmbeddings, data_dir: str
) -> dict[str, float]:
    """{"title_pooling.POOLING.recall@1"}: validation R@1 of the embedding with each pooling of
    the title half (`model.title_pooling = "auto"`; empty otherwise). The mean is the trained
    embedding already embedded (`mean_split`); only the `[CLS]` candidate is embedded here."""
    if cls_candidate is None:
        return {}
    cls_config, embed_fn = cls_candidate
    cls_split = embed_split_with(
        {"cls": model_embedder(params, cls_config, embed_fn)},
        cls_config,
        data_dir,
        "validation",
        removals=(None,),
    )["cls"]
    return {
        f"title_pooling.{pooling}.recall@1": float(
            retrieval_against_split(split, split.full)["recall@1"]
        )
        for pooling, split in (("mean", mean_split), ("cls", cls_split))
    }


def _log_reference(name: str, metrics: dict, prefix: str) -> None:
    """One log line of a reference row's validation figures (nan: its evaluator was not run)."""
    reference = {
        key[len(prefix) :]: value for key, value in metrics.items() if key.startswith(prefix)
    }
    nan = float("nan")
    logging.info(
        "[validation] reference %s: R@1=%.4f R@10=%.4f mAP@R=%.4f no-title "
        "R@1=%.4f no-image R@1=%.4f image-only probe=%.4f ITM acc=%s",
        name,
        reference.get("retrieval.recall@1", nan),
        reference.get("retrieval.recall@10", nan),
        reference.get("retrieval.map@r", nan),
        reference.get("retrieval_no_title.recall@1", nan),
        reference.get("retrieval_no_image.recall@1", nan),
        reference.get("linear_probe_no_title.top1_accuracy", nan),
        f"{reference['itm.accuracy']:.4f}" if "itm.accuracy" in reference else "n/a",
    )
