"""What every evaluator reads: a split embedded once, with and without each modality.

`embed_split_with` reads a split in one pass and embeds it with every embedder (the
trained model and the reference rows), once per requested modality removal; an
`EvaluationInputs` bundles one embedder's embedded splits with what the evaluators share
(the number of categories, the ITM pairs and matcher), so that each evaluator's `run`
computes from the same arrays and nothing is embedded twice.
"""

import dataclasses
from collections.abc import Callable

import numpy as np

from item_jax import batch as batch_lib
from item_jax import embedding, objectives
from item_jax.data import input_pipeline, readable_records
from item_jax.evaluation import baselines, matching, retrieval

REMOVALS = batch_lib.REMOVALS

# (numpy eval batch, removal) -> [B, D] embeddings of every row of the batch.
Embedder = Callable[[dict, str | None], np.ndarray]


class SplitEmbeddings:
    """Embeddings of one split, with and without each modality, plus labels.

    `full` is None when the split was embedded only with a modality removed.
    """

    def __init__(self, full, groups, categories, ids, without_title=None, without_image=None):
        self.full, self.groups, self.categories, self.ids = full, groups, categories, ids
        self.without_title, self.without_image = without_title, without_image


@dataclasses.dataclass
class EvaluationInputs:
    """One embedder's embedded splits and what its evaluators share.

    Attributes:
      split: the scored split (test, or validation for the trainer).
      train: the train split the probes and k-NN are fitted on; None: nothing to fit.
      num_classes: the catalog's number of categories.
      pairs: the scored split's fixed ITM listings; matcher: the embedder's ITM logits
        (None for an embedder without an ITM head).
      data: the "data" section (what was read); None leaves it out.
      evaluators: the names chosen for this run (the reference rows run the same ones).
      references: {name: inputs} of the reference rows embedded in the same pass.
    """

    split: SplitEmbeddings
    train: SplitEmbeddings | None
    num_classes: int
    pairs: matching.PairSource | None = None
    matcher: matching.Matcher | None = None
    data: dict | None = None
    evaluators: tuple[str, ...] = ()
    references: dict[str, "EvaluationInputs"] = dataclasses.field(default_factory=dict)
    _retrieval: dict | None = dataclasses.field(default=None, repr=False)

    def full_retrieval(self) -> dict:
        """Same-product retrieval of full listings, computed once for every evaluator."""
        if self._retrieval is None:
            self._retrieval = retrieval_against_split(self.split, self.split.full)
        return self._retrieval


def retrieval_against_split(split: SplitEmbeddings, queries: np.ndarray) -> dict:
    """Every listing of the split queries the split's full listings, itself left out."""
    self_index = np.arange(len(split.groups))
    return retrieval.retrieval_metrics(
        queries, split.groups, split.full, split.groups, query_gallery_index=self_index
    )


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
            stack(vectors[name][None]) if None in removals else None,
            stack(groups),
            stack(categories),
            ids,
        )
        if "title" in removals:
            result.without_title = stack(vectors[name]["title"])
        if "image" in removals:
            result.without_image = stack(vectors[name]["image"])
        results[name] = result
    return results
