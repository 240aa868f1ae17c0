"""Downstream evaluation of an ITEm embedding (ITEM_SPEC section 5), the protocol behind
`python -m item_jax.cli.evaluate` and the trainer's periodic validation.

On the converter's splits (product groups never cross splits):
  * same-product retrieval on the test split (unseen products): every listing whose group
    has another member queries all other test listings; Recall@1/5/10 and mAP@R;
  * category prediction on frozen embeddings: a linear probe and cosine k-NN, fitted on
    the train split and scored on the test split; top-1 accuracy and macro-F1; and the
    same linear probe on image-only embeddings (every title removed, train and test):
    what the model knows of a product from its photo;
  * image-text matching: the ITM head's accuracy on a fixed draw of test pairs, each
    listing with its own photo and with another group's (`item_jax/evaluation/matching.py`);
  * modality balance: the same retrieval with each query's title removed, and with its
    image removed (through the attention masks), against the full gallery; the drops in
    Recall@1 say how much the embedding leans on each modality;
  * reference rows, the same metrics in the same pass (ITEM_SPEC section 6): the same
    encoder untrained (step 0), title TF-IDF, a colour histogram and the two concatenated
    (`item_jax/evaluation/baselines.py`).
Writes metrics.json, report.md, report.html (`html_report.py`: what the model retrieves,
beside title TF-IDF) and PNG plots to --out. `make_validation_evaluator` is the
same retrieval on the validation split, run periodically by the trainer; in a job of many
processes (a pod) every process reads the same validation batches, embeds the rows of its
own devices (`item_jax/embedding.py`), receives all rows back, and the figures equal a
single process's. Every split is read as `config.data.on_corrupt_record` says
(`item_jax/data/readable_records.py`: in skip mode, the records the trainer left out are
left out here too, and counted in `metrics["data"]`).
"""

import os
from collections.abc import Callable

import jax
import numpy as np
from absl import logging

from item_jax import batch as batch_lib
from item_jax import embedding, objectives, sharding, train_step
from item_jax.data import dataset_info, input_pipeline, readable_records
from item_jax.evaluation import (
    baselines,
    classification,
    html_report,
    matching,
    plots,
    report,
    retrieval,
)
from item_jax.model import model_from_config

REMOVALS = batch_lib.REMOVALS
TRAINED = "trained"
UNTRAINED = "untrained"

# (numpy eval batch, removal) -> [B, D] embeddings of every row of the batch.
Embedder = Callable[[dict, str | None], np.ndarray]
# Train listings whose image-only embeddings fit the trainer's periodic image-only probe.
VALIDATION_PROBE_TRAIN_EXAMPLES = 2000


class SplitEmbeddings:
    """Embeddings of one split, with and without each modality, plus labels."""

    def __init__(self, full, groups, categories, ids, without_title=None, without_image=None):
        self.full, self.groups, self.categories, self.ids = full, groups, categories, ids
        self.without_title, self.without_image = without_title, without_image


def model_embedder(params, config, embed_fn: Callable | None = None) -> Embedder:
    """The model's embedding of a batch; a one-modality model sees only what it trained on."""
    embed_fn = embed_fn or embedding.make_embed_fn(config.model)
    modalities = objectives.enabled_modalities(config)

    def embed(batch, removal):
        inputs = {key: batch[key] for key in batch_lib.MODEL_INPUT_KEYS + ("has_title",)}
        inputs = batch_lib.remove_modality(batch_lib.keep_modalities(inputs, modalities), removal)
        return embed_fn(params, inputs)

    return embed


def model_matcher(params, config, match_fn: Callable | None = None) -> matching.Matcher | None:
    """The model's ITM logits of title-photo pairs; None for a model that cannot match them."""
    if "itm" not in objectives.enabled_objectives(config) or set(
        objectives.enabled_modalities(config)
    ) != {"text", "image"}:
        return None
    match_fn = match_fn or embedding.make_match_fn(config.model)
    return lambda inputs: match_fn(params, inputs)


def baseline_embedder(baseline: baselines.Baseline) -> Embedder:
    """A classical reference's embedding of a batch (it reads the titles and the photos)."""

    def embed(batch, removal):
        titles = [title.decode("utf-8") for title in batch["title"]]
        return baseline.embed(
            baselines.ListingBatch(titles, batch["image"], batch["has_image"]), removal
        )

    return embed


def embed_split_with(
    embedders: dict[str, Embedder],
    config,
    data_dir: str,
    split: str,
    *,
    removals=REMOVALS,
    batch_size: int = 64,
    max_examples: int | None = None,
    pair_source: matching.PairSource | None = None,
) -> dict[str, SplitEmbeddings]:
    """Embeds a split in one pass with every embedder, once per requested removal.

    `pair_source`, when given, also gathers the split's listings for ITM in the same pass.
    """
    vectors = {name: {removal: [] for removal in removals} for name in embedders}
    groups, categories, ids = [], [], []
    readable = readable_records.of_split(data_dir, split, readable_records.mode_of(config))
    for batch, batch_ids in input_pipeline.iterate_eval_batches(
        data_dir,
        split,
        image_size=config.model.image_size,
        max_text_len=config.model.max_text_len,
        batch_size=batch_size,
        with_titles=True,
        readable=readable,
    ):
        valid = batch["valid"].astype(bool)
        if pair_source is not None:
            pair_source.add(batch)
        for name, embed in embedders.items():
            for removal in removals:
                vectors[name][removal].append(embed(batch, removal)[valid])
        groups.append(batch["group_index"][valid])
        categories.append(batch["category_index"][valid])
        ids.extend(batch_ids)
        if max_examples and len(ids) >= max_examples:
            break
    stack = lambda parts: np.concatenate(parts) if parts else np.zeros((0,), np.int32)
    results = {}
    for name in embedders:
        result = SplitEmbeddings(
            stack(vectors[name][removals[0]]), stack(groups), stack(categories), ids
        )
        if "title" in removals:
            result.without_title = stack(vectors[name]["title"])
        if "image" in removals:
            result.without_image = stack(vectors[name]["image"])
        results[name] = result
    return results


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


def retrieval_with_balance(split: SplitEmbeddings) -> dict:
    """Retrieval of the split against itself; again with titles / images removed from queries."""
    self_index = np.arange(len(split.groups))
    metrics = {
        "retrieval": retrieval.retrieval_metrics(
            split.full, split.groups, split.full, split.groups, query_gallery_index=self_index
        )
    }
    for name, queries in (
        ("retrieval_no_title", split.without_title),
        ("retrieval_no_image", split.without_image),
    ):
        if queries is not None:
            metrics[name] = retrieval.retrieval_metrics(
                queries, split.groups, split.full, split.groups, query_gallery_index=self_index
            )
    full_r1 = metrics["retrieval"]["recall@1"]
    metrics["modality_balance"] = {
        f"recall@1_drop_without_{name.rsplit('_', 1)[1]}": full_r1 - metrics[name]["recall@1"]
        for name in ("retrieval_no_title", "retrieval_no_image")
        if name in metrics
    }
    return metrics


def downstream_metrics(test: SplitEmbeddings, train: SplitEmbeddings, num_classes: int) -> dict:
    """Retrieval with modality balance on test; linear probe and k-NN from train to test."""
    metrics = retrieval_with_balance(test)
    metrics["linear_probe"] = classification.linear_probe(
        train.full, train.categories, test.full, test.categories, num_classes=num_classes
    )
    metrics["knn"] = classification.knn_classify(
        train.full,
        train.categories,
        test.full,
        test.categories,
        num_classes=num_classes,
        k=min(10, len(train.full)),
    )
    if train.without_title is not None and test.without_title is not None:
        metrics["linear_probe_no_title"] = image_only_probe(train, test, num_classes)
    return metrics


def image_only_probe(train: SplitEmbeddings, test: SplitEmbeddings, num_classes: int) -> dict:
    """The linear probe on embeddings of the photos alone (titles removed on both sides)."""
    return classification.linear_probe(
        train.without_title,
        train.categories,
        test.without_title,
        test.categories,
        num_classes=num_classes,
    )


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


def untrained_params(config):
    """The reference encoder: the same config at step 0."""
    return train_step.initial_params(model_from_config(config.model), config.seed)


def evaluate_embedders(
    embedders: dict[str, Embedder],
    config,
    data_dir: str,
    *,
    max_train_examples: int = 50_000,
    matchers: dict[str, matching.Matcher] | None = None,
) -> dict[str, tuple[dict, SplitEmbeddings]]:
    """Every downstream metric of every embedder: {name: (metrics, test embeddings)}.

    `matchers` (name -> ITM logits) add `itm`: accuracy on the test split's fixed pairs.
    """
    info = dataset_info.load_dataset_info(data_dir)
    pairs = matching.PairSource()
    test = embed_split_with(embedders, config, data_dir, "test", pair_source=pairs)
    train = embed_split_with(
        embedders,
        config,
        data_dir,
        "train",
        removals=(None, "title"),
        max_examples=max_train_examples,
    )
    num_classes = max(len(info["categories"]), 1)
    results = {}
    for name in embedders:
        metrics = downstream_metrics(test[name], train[name], num_classes)
        if matchers and matchers.get(name) is not None:
            metrics["itm"] = matching.itm_accuracy(matchers[name], pairs)
        metrics["data"] = dict(
            dir=os.path.abspath(data_dir),
            num_test=len(test[name].ids),
            num_train_for_probe=len(train[name].ids),
            **_left_out(config, data_dir, ("test", "train")),
        )
        results[name] = (metrics, test[name])
    return results


def _left_out(config, data_dir: str, splits: tuple[str, ...]) -> dict:
    """Skip mode: the records left out of each split (as its readers left them out)."""
    mode = readable_records.mode_of(config)
    if mode != "skip":
        return {}
    return {
        f"records_left_out_{split}": readable_records.of_split(data_dir, split, mode).num_left_out
        for split in splits
    }


def evaluate_references(
    config, data_dir: str, *, max_train_examples: int = 50_000
) -> dict[str, dict]:
    """{reference name: metrics}: the untrained encoder and the classical baselines."""
    untrained = untrained_params(config)
    results = evaluate_embedders(
        reference_embedders(config, data_dir, max_train_examples, untrained),
        config,
        data_dir,
        max_train_examples=max_train_examples,
        matchers={UNTRAINED: model_matcher(untrained, config)},
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
    """Every downstream metric of `params`; with `out_dir`, the report and the plots too.

    With `with_references`, `metrics["references"]` holds the same metrics of the untrained
    encoder and of the classical baselines (`item_jax/evaluation/baselines.py`), computed in
    the same pass over the same splits.
    """
    embedders = {TRAINED: model_embedder(params, config)}
    matchers = {TRAINED: model_matcher(params, config)}
    if with_references:
        untrained = untrained_params(config)
        embedders.update(reference_embedders(config, data_dir, max_train_examples, untrained))
        matchers[UNTRAINED] = model_matcher(untrained, config)
    results = evaluate_embedders(
        embedders, config, data_dir, max_train_examples=max_train_examples, matchers=matchers
    )
    metrics, test = results.pop(TRAINED)
    if with_references:
        metrics["references"] = {name: reference for name, (reference, _) in results.items()}
    if out_dir:
        write_outputs(
            metrics,
            test,
            dataset_info.load_dataset_info(data_dir),
            out_dir,
            title,
            data_dir=data_dir,
            references={name: split for name, (_, split) in results.items()},
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

    Each call gives same-product retrieval (with the modality balance), the ITM head's
    accuracy on the validation split's fixed pairs (`itm.*`), and the linear probe of the
    category on image-only embeddings (`linear_probe_no_title.*`, fitted on the image-only
    embeddings of up to VALIDATION_PROBE_TRAIN_EXAMPLES train listings).

    With `with_references`, the first call also embeds the validation split with the
    reference embedders, logs their figures, and adds them to its metrics as
    `references.NAME.retrieval.recall@1` (and the other flat keys), so that the run's
    metrics.jsonl holds the curve and what it is to be compared with.
    """
    # A pod embeds over the training mesh (every process its own devices' rows); one process
    # over its local devices, where the trainer's parameters already are.
    mesh = sharding.make_mesh(config.mesh) if jax.process_count() > 1 else None
    embed_fn = embedding.make_embed_fn(config.model, mesh)
    match_fn = embedding.make_match_fn(config.model, mesh)
    num_classes = max(len(dataset_info.load_dataset_info(data_dir)["categories"]), 1)
    pending_references = [with_references]

    def flat_metrics(split, train, matcher, pairs):
        metrics = retrieval_with_balance(split)
        if train is not None and len(train.groups):
            metrics["linear_probe_no_title"] = image_only_probe(train, split, num_classes)
        if matcher is not None:
            metrics["itm"] = matching.itm_accuracy(matcher, pairs)
        return {
            key: float(value)
            for key, value in report.flatten_metrics(metrics).items()
            if isinstance(value, (int, float)) and not key.endswith("num_gallery")
        }

    def evaluate(params, step):  # pylint: disable=unused-argument
        embedders = {TRAINED: model_embedder(params, config, embed_fn)}
        matchers = {TRAINED: model_matcher(params, config, match_fn)}
        if pending_references[0]:
            untrained = untrained_params(config)
            embedders.update(reference_embedders(config, data_dir, 50_000, untrained))
            matchers[UNTRAINED] = model_matcher(untrained, config, match_fn)
            pending_references[0] = False
        pairs = matching.PairSource()
        splits = embed_split_with(embedders, config, data_dir, "validation", pair_source=pairs)
        if len(splits[TRAINED].ids) < 2:
            return {}
        train = embed_split_with(
            embedders,
            config,
            data_dir,
            "train",
            removals=("title",),
            max_examples=VALIDATION_PROBE_TRAIN_EXAMPLES,
        )
        metrics = flat_metrics(splits.pop(TRAINED), train[TRAINED], matchers[TRAINED], pairs)
        metrics.update(
            {
                f"data.{key}": float(value)
                for key, value in _left_out(config, data_dir, ("validation",)).items()
            }
        )
        for name, split in splits.items():
            reference = flat_metrics(split, train[name], matchers.get(name), pairs)
            logging.info(
                "[validation] reference %s: R@1=%.4f R@10=%.4f mAP@R=%.4f no-title "
                "R@1=%.4f no-image R@1=%.4f image-only probe=%.4f ITM acc=%s",
                name,
                reference["retrieval.recall@1"],
                reference["retrieval.recall@10"],
                reference["retrieval.map@r"],
                reference["retrieval_no_title.recall@1"],
                reference["retrieval_no_image.recall@1"],
                reference.get("linear_probe_no_title.top1_accuracy", float("nan")),
                f"{reference['itm.accuracy']:.4f}" if "itm.accuracy" in reference else "n/a",
            )
            metrics.update({f"references.{name}.{key}": value for key, value in reference.items()})
        return metrics

    return evaluate


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
    """The few lines a person reads first: the model, then each reference row beside it."""
    r, probe, knn = metrics["retrieval"], metrics["linear_probe"], metrics["knn"]
    lines = [
        f"same-product search: R@1={r['recall@1']:.3f} R@5={r['recall@5']:.3f} "
        f"R@10={r['recall@10']:.3f} mAP@R={r['map@r']:.3f} ({r['num_queries']} queries)",
        f"category: probe acc={probe['top1_accuracy']:.3f} F1={probe['macro_f1']:.3f}; "
        f"kNN acc={knn['top1_accuracy']:.3f} F1={knn['macro_f1']:.3f}",
    ]
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
    r1, probe = metrics["retrieval"]["recall@1"], metrics["linear_probe"]["top1_accuracy"]
    if UNTRAINED in references:
        base = references[UNTRAINED]
        parts.append(
            f"vs untrained: R@1 {r1 - base['retrieval']['recall@1']:+.3f}, probe "
            f"{probe - base['linear_probe']['top1_accuracy']:+.3f}"
        )
    if "title_tfidf" in references:
        parts.append(
            f"vs title TF-IDF: R@1 {r1 - references['title_tfidf']['retrieval']['recall@1']:+.3f}"
        )
    return "; ".join(parts)
