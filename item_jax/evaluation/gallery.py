"""What an embedding retrieves, query by query: the numbers behind the HTML report's gallery.

Every test listing whose product has another test listing is a query (as in
`retrieval.retrieval_metrics`); it searches all other test listings by cosine. Here the
ranked neighbours are kept, not only the recall: which queries one embedding gets right at
rank 1 and another gets wrong, and Recall@1 per category. Samples are drawn from
`np.random.default_rng(seed)`, so a report shows the same queries on every run.
"""

import dataclasses

import numpy as np

from item_jax.evaluation import retrieval


@dataclasses.dataclass(frozen=True)
class Neighbours:
    """The k nearest other listings of every row: indices, cosines, same-product flags."""

    indices: np.ndarray  # int [N, k]; N (none) where the split has fewer than k others.
    scores: np.ndarray  # float32 [N, k], best first.
    same_group: np.ndarray  # bool [N, k]: the neighbour is the same product.

    @property
    def top1_correct(self) -> np.ndarray:
        return self.same_group[:, 0]


def query_rows(groups) -> np.ndarray:
    """bool [N]: the rows whose product has at least one other listing (the queries)."""
    groups = np.asarray(groups)
    _, codes, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    return sizes[codes.reshape(-1)] > 1


def nearest_neighbours(embeddings, groups, *, k: int = 5) -> Neighbours:
    """Each row's k nearest other rows of the same split (itself left out)."""
    embeddings = np.asarray(embeddings, np.float32)
    groups = np.asarray(groups)
    if embeddings.ndim != 2 or groups.shape != (len(embeddings),):
        raise ValueError(
            f"need [N, D] embeddings and [N] groups, got {embeddings.shape} and {groups.shape}"
        )
    num_rows = len(embeddings)
    if num_rows < 2:
        raise ValueError(f"need at least 2 listings to find neighbours, got {num_rows}")
    indices = np.full((num_rows, k), num_rows, np.int64)
    scores = np.full((num_rows, k), -np.inf, np.float32)
    width = min(k, num_rows - 1)
    for start, chunk_scores, chunk_indices in retrieval.iter_cosine_top_k(
        embeddings, embeddings, k=width, exclude_gallery_index=np.arange(num_rows, dtype=np.int32)
    ):
        indices[start : start + len(chunk_indices), :width] = chunk_indices
        scores[start : start + len(chunk_scores), :width] = chunk_scores
    padded_groups = np.concatenate([groups, [np.iinfo(np.int64).min]]).astype(groups.dtype)
    same_group = (padded_groups[indices] == groups[:, None]) & (indices < num_rows)
    return Neighbours(indices, scores, same_group)


def compare_top1(model: Neighbours, reference: Neighbours, queries: np.ndarray) -> dict:
    """Counts and row indices of the queries one embedding gets right at rank 1, the other not."""
    queries = np.asarray(queries, bool)
    model_right = model.top1_correct & queries
    reference_right = reference.top1_correct & queries
    return dict(
        num_queries=int(queries.sum()),
        both_right=int(np.sum(model_right & reference_right)),
        model_right_reference_wrong=np.flatnonzero(model_right & ~reference_right),
        reference_right_model_wrong=np.flatnonzero(reference_right & ~model_right),
        both_wrong=int(np.sum(queries & ~model_right & ~reference_right)),
    )


def sample_rows(rows, count: int, seed: int = 0) -> np.ndarray:
    """A seeded sample of at most `count` of `rows`, in row order."""
    rows = np.asarray(rows, np.int64)
    if len(rows) <= count:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, count, replace=False))


def per_category_recall_at_1(
    neighbours: Neighbours, queries, categories, num_classes: int
) -> tuple[np.ndarray, list[float | None]]:
    """(queries per category [C], Recall@1 per category, None where a category has none)."""
    queries = np.asarray(queries, bool)
    categories = np.asarray(categories)
    labelled = queries & (categories >= 0)
    counts = np.bincount(categories[labelled], minlength=num_classes)
    right = np.bincount(categories[labelled & neighbours.top1_correct], minlength=num_classes)
    return counts, [float(right[c] / counts[c]) if counts[c] else None for c in range(num_classes)]
