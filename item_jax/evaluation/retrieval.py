"""Same-product retrieval metrics (docs/design.md, "Evaluation protocol") on plain embedding arrays.

Every query ranks the gallery by cosine similarity of L2-normalised embeddings; a gallery
item is relevant when it shares the query's product group. Reported:

- `recall@k`: fraction of queries with at least one relevant item in the top k.
- `map@r`: mAP@R of Musgrave et al., "A Metric Learning Reality Check" (2020). With R the
  number of relevant gallery items of a query, AP@R = (1/R) * sum over the ranks i <= R that
  hold a relevant item of precision@i; mAP@R averages AP@R over the queries.

Protocol:
- A query's own gallery row (`query_gallery_index`) is never ranked.
- Queries with no relevant gallery item (a group of one) are skipped and counted in
  `num_skipped_queries`; the metrics average over the other `num_queries`.
- Ties: equal scores are ordered by gallery index, lower first.
- R is capped at `max_map_r` (default 1000): a query with more relevant items is scored on
  its top `max_map_r` ranks, AP = (1/cap) * sum of precision@i over relevant i <= cap. Such
  queries are counted in `num_map_r_capped_queries`.

Exact top-k in JAX, never the full query x gallery matrix: the gallery sits on the device
once; query tiles of `QUERY_TILE_ROWS` scan over gallery tiles of `GALLERY_TILE_ROWS` and
keep a running top-k (merged tile by tile, so a 1M x 768 gallery needs ~3 GB plus
O(tile * k)). Every pair's score comes from a matmul of the same fixed tile shape, so the
scores, the ranking and the metrics are bit-identical whatever `chunk_size` (the number of
queries handed to the device per call, rounded up to whole query tiles) is.

Typical use, the test split ranked against itself:
  retrieval_metrics(emb, groups, emb, groups, query_gallery_index=np.arange(len(emb)))
Modality balance: embed the queries without title (or image), keep the full gallery and the
same `query_gallery_index`.
"""

import dataclasses
import functools
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

QUERY_TILE_ROWS = 128
GALLERY_TILE_ROWS = 1024
DEFAULT_MAX_MAP_R = 1000


@dataclasses.dataclass(frozen=True)
class QueryOutcomes:
    """Per-query results of one ranking pass; the metrics are summaries of these.

    Attributes:
      first_hit_rank: [num_queries] 1-based rank of the first relevant item, 0 when none is
        within the searched ranks.
      average_precision_at_r: [num_queries] AP@R (R capped at `max_map_r`).
      num_relevant: [num_queries] R before capping.
      query_rows: [num_queries] row of each evaluated query in the input queries.
      searched_ranks: how many ranks were searched (first hits beyond it read 0).
      num_skipped_queries: queries without any relevant gallery item.
      num_map_r_capped_queries: queries whose R exceeded `max_map_r`.
    """

    first_hit_rank: np.ndarray
    average_precision_at_r: np.ndarray
    num_relevant: np.ndarray
    query_rows: np.ndarray
    searched_ranks: int
    num_skipped_queries: int
    num_map_r_capped_queries: int


def retrieval_metrics(
    query_embeddings,
    query_groups,
    gallery_embeddings,
    gallery_groups,
    *,
    query_gallery_index=None,
    ks: Sequence[int] = (1, 5, 10),
    max_map_r: int = DEFAULT_MAX_MAP_R,
    chunk_size: int = 4096,
) -> dict:
    """Recall@k for each k in `ks` and mAP@R (see the module docstring for the protocol).

    Args:
      query_embeddings: [Q, D] float array.
      query_groups: [Q] product group of each query (ints or strings).
      gallery_embeddings: [N, D] float array.
      gallery_groups: [N] product group of each gallery item.
      query_gallery_index: [Q] gallery row of query i itself, -1 when it is not in the
        gallery; None means no query is in the gallery.
      ks: the k of each recall@k.
      max_map_r: cap on R for mAP@R.
      chunk_size: queries per device call; a memory knob, it never changes the result.

    Returns:
      {"recall@k": float for k in ks, "map@r": float, "num_queries", "num_skipped_queries",
       "num_map_r_capped_queries", "num_gallery"}.
    """
    ks = _checked_ks(ks)
    outcomes = rank_queries(
        query_embeddings,
        query_groups,
        gallery_embeddings,
        gallery_groups,
        query_gallery_index=query_gallery_index,
        max_rank=max(ks),
        max_map_r=max_map_r,
        chunk_size=chunk_size,
    )
    metrics = summarise_outcomes(outcomes, ks)
    metrics["num_gallery"] = len(gallery_groups)
    return metrics


def recall_at_k_curve(
    query_embeddings,
    query_groups,
    gallery_embeddings,
    gallery_groups,
    *,
    query_gallery_index=None,
    max_k: int = 50,
    chunk_size: int = 4096,
) -> np.ndarray:
    """Recall@k for k = 1..max_k as a float64 array of length `max_k` (index 0 is k=1)."""
    outcomes = rank_queries(
        query_embeddings,
        query_groups,
        gallery_embeddings,
        gallery_groups,
        query_gallery_index=query_gallery_index,
        max_rank=max_k,
        max_map_r=1,
        chunk_size=chunk_size,
    )
    return recall_curve(outcomes, max_k)


def summarise_outcomes(outcomes: QueryOutcomes, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """The metrics dict of `retrieval_metrics` from one ranking pass."""
    ks = _checked_ks(ks)
    if max(ks) > outcomes.searched_ranks:
        raise ValueError(
            f"recall@{max(ks)} needs {max(ks)} ranks but the pass searched "
            f"{outcomes.searched_ranks}; call rank_queries with a larger max_rank"
        )
    curve = recall_curve(outcomes, max(ks))
    metrics = {f"recall@{k}": float(curve[k - 1]) for k in ks}
    num_queries = len(outcomes.first_hit_rank)
    metrics["map@r"] = (
        float(np.mean(outcomes.average_precision_at_r)) if num_queries else float("nan")
    )
    metrics["num_queries"] = num_queries
    metrics["num_skipped_queries"] = outcomes.num_skipped_queries
    metrics["num_map_r_capped_queries"] = outcomes.num_map_r_capped_queries
    return metrics


def recall_curve(outcomes: QueryOutcomes, max_k: int | None = None) -> np.ndarray:
    """Recall@k for k = 1..max_k (default: every searched rank) from one ranking pass."""
    max_k = outcomes.searched_ranks if max_k is None else max_k
    if not 1 <= max_k <= outcomes.searched_ranks:
        raise ValueError(f"max_k must be in [1, {outcomes.searched_ranks}], got {max_k}")
    ranks = outcomes.first_hit_rank
    if len(ranks) == 0:
        return np.full(max_k, np.nan)
    hits_at_rank = np.bincount(ranks[ranks > 0], minlength=max_k + 1)[1 : max_k + 1]
    return np.cumsum(hits_at_rank) / len(ranks)


def rank_queries(
    query_embeddings,
    query_groups,
    gallery_embeddings,
    gallery_groups,
    *,
    query_gallery_index=None,
    max_rank: int = 10,
    max_map_r: int = DEFAULT_MAX_MAP_R,
    chunk_size: int = 4096,
) -> QueryOutcomes:
    """One ranking pass: per-query first-hit rank (up to `max_rank`) and AP@R.

    Use it directly to get both `summarise_outcomes` and `recall_curve` from one pass.
    """
    query_codes, gallery_codes = _group_codes(
        query_groups, gallery_groups, len(query_embeddings), len(gallery_embeddings)
    )
    self_index = _checked_self_index(query_gallery_index, query_codes, gallery_codes)
    if max_rank < 1 or max_map_r < 1:
        raise ValueError(f"max_rank and max_map_r must be >= 1, got {max_rank}, {max_map_r}")

    num_relevant = np.bincount(gallery_codes, minlength=query_codes.max(initial=0) + 1)
    num_relevant = num_relevant[query_codes] - (self_index >= 0)
    query_rows = np.flatnonzero(num_relevant > 0)
    num_relevant = num_relevant[query_rows]
    capped_r = np.minimum(num_relevant, max_map_r)
    searched_ranks = int(max(max_rank, capped_r.max(initial=0)))

    first_hit_rank = np.zeros(len(query_rows), np.int64)
    average_precision = np.zeros(len(query_rows), np.float64)
    # Gallery row N stands for "no item" (excluded or past the gallery's end).
    gallery_codes_or_none = np.append(gallery_codes, -1)
    queries = np.asarray(query_embeddings)[query_rows]
    for start, _, top_indices in iter_cosine_top_k(
        queries,
        gallery_embeddings,
        k=searched_ranks,
        exclude_gallery_index=self_index[query_rows],
        chunk_size=chunk_size,
    ):
        rows = slice(start, start + len(top_indices))
        hits = gallery_codes_or_none[top_indices] == query_codes[query_rows[rows], None]
        first_hit_rank[rows], average_precision[rows] = _first_hit_and_ap(hits, capped_r[rows])
    return QueryOutcomes(
        first_hit_rank=first_hit_rank,
        average_precision_at_r=average_precision,
        num_relevant=num_relevant,
        query_rows=query_rows,
        searched_ranks=searched_ranks,
        num_skipped_queries=len(query_codes) - len(query_rows),
        num_map_r_capped_queries=int(np.sum(num_relevant > max_map_r)),
    )


def _first_hit_and_ap(hits: np.ndarray, capped_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[c, K] relevance of the ranked items -> (first-hit rank or 0, AP@R)."""
    ranks = np.arange(1, hits.shape[1] + 1)
    first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    within_r = ranks[None, :] <= capped_r[:, None]
    precision = np.cumsum(hits, axis=1) / ranks[None, :]
    average_precision = np.sum(precision * (hits & within_r), axis=1) / capped_r
    return first_hit, average_precision


def iter_cosine_top_k(
    query_embeddings,
    gallery_embeddings,
    *,
    k: int,
    exclude_gallery_index=None,
    chunk_size: int = 4096,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Exact cosine top-k of every query over the gallery, one chunk of queries at a time.

    Yields (first query row of the chunk, scores float32 [c, k], gallery indices int32
    [c, k]), best first, equal scores by lower gallery index. Slots without an item (k larger
    than the gallery, or the excluded row) hold score -inf and index N = len(gallery).

    Args:
      query_embeddings: [Q, D]; rows are L2-normalised here.
      gallery_embeddings: [N, D]; rows are L2-normalised here.
      k: neighbours per query.
      exclude_gallery_index: [Q] gallery row never returned for query i (-1: none).
      chunk_size: queries per device call, rounded up to a multiple of QUERY_TILE_ROWS.
    """
    queries, gallery, exclude = checked_search_inputs(
        query_embeddings, gallery_embeddings, k, exclude_gallery_index, chunk_size
    )
    gallery_tiles = jnp.asarray(
        normalised_padded(gallery, GALLERY_TILE_ROWS).reshape(
            -1, GALLERY_TILE_ROWS, gallery.shape[1]
        )
    )
    num_gallery = np.int32(len(gallery))
    yield from iter_query_blocks(
        queries,
        exclude,
        chunk_size,
        k,
        lambda query_tiles, exclude_tiles: _top_k_for_query_block(
            query_tiles, exclude_tiles, gallery_tiles, num_gallery, k=k
        ),
    )


def checked_search_inputs(
    query_embeddings, gallery_embeddings, k: int, exclude_gallery_index, chunk_size: int
):
    """(queries, gallery, exclude [Q] int32) after the checks every search makes."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    queries = checked_embeddings(query_embeddings, "query_embeddings")
    gallery = checked_embeddings(gallery_embeddings, "gallery_embeddings")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"query and gallery embeddings differ in width: "
            f"{queries.shape[1]} vs {gallery.shape[1]}"
        )
    exclude = (
        np.full(len(queries), -1, np.int32)
        if exclude_gallery_index is None
        else np.asarray(exclude_gallery_index, np.int32)
    )
    return queries, gallery, exclude


def iter_query_blocks(
    queries: np.ndarray, exclude: np.ndarray, chunk_size: int, k: int, search
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Hands the normalised queries to `search(query_tiles [T, Tq, D], exclude [T, Tq])` in
    fixed-shape blocks of about `chunk_size` rows; yields (first row, scores, indices)."""
    num_queries, width = queries.shape
    tiles_per_call = -(-chunk_size // QUERY_TILE_ROWS)
    rows_per_call = tiles_per_call * QUERY_TILE_ROWS
    for start in range(0, num_queries, rows_per_call):
        stop = min(start + rows_per_call, num_queries)
        block = np.zeros((rows_per_call, width), np.float32)
        block[: stop - start] = normalised_padded(queries[start:stop], 1)
        block_exclude = np.full(rows_per_call, -1, np.int32)
        block_exclude[: stop - start] = exclude[start:stop]
        scores, indices = search(
            block.reshape(tiles_per_call, QUERY_TILE_ROWS, width),
            block_exclude.reshape(tiles_per_call, QUERY_TILE_ROWS),
        )
        yield (
            start,
            np.asarray(scores).reshape(rows_per_call, k)[: stop - start],
            np.asarray(indices).reshape(rows_per_call, k)[: stop - start],
        )


@functools.partial(jax.jit, static_argnames=("k",))
def _top_k_for_query_block(query_tiles, exclude_tiles, gallery_tiles, num_gallery, *, k):
    """[T, Tq, D] query tiles -> top-k (scores, indices) [T, Tq, k] over all gallery tiles."""
    gallery_starts = jnp.arange(gallery_tiles.shape[0], dtype=jnp.int32) * GALLERY_TILE_ROWS
    return block_top_k(query_tiles, exclude_tiles, gallery_tiles, gallery_starts, num_gallery, k)


def block_top_k(query_tiles, exclude_tiles, gallery_tiles, gallery_starts, num_gallery, k):
    """Top-k of query tiles over gallery tiles whose first rows are `gallery_starts`."""

    def top_k_for_query_tile(tile_and_exclude):
        queries, exclude = tile_and_exclude

        def merge_gallery_tile(best, gallery_tile_and_start):
            best_scores, best_indices = best
            gallery_tile, gallery_start = gallery_tile_and_start
            scores = jnp.matmul(queries, gallery_tile.T, precision=jax.lax.Precision.HIGHEST)
            gallery_index = gallery_start + jnp.arange(GALLERY_TILE_ROWS, dtype=jnp.int32)
            dropped = (gallery_index[None, :] >= num_gallery) | (
                gallery_index[None, :] == exclude[:, None]
            )
            scores = jnp.where(dropped, -jnp.inf, scores)
            indices = jnp.where(dropped, num_gallery, gallery_index[None, :])
            # The running best come from earlier (lower-index) tiles and top_k keeps the lower
            # position first among equal scores: ties resolve to the lower gallery index.
            return merge_top_k(
                jnp.concatenate([best_scores, scores], axis=1),
                jnp.concatenate([best_indices, indices], axis=1),
                k,
            ), None

        empty = (
            jnp.full((queries.shape[0], k), -jnp.inf, jnp.float32),
            jnp.full((queries.shape[0], k), num_gallery, jnp.int32),
        )
        best, _ = jax.lax.scan(merge_gallery_tile, empty, (gallery_tiles, gallery_starts))
        return best

    return jax.lax.map(top_k_for_query_tile, (query_tiles, exclude_tiles))


def merge_top_k(scores, indices, k):
    """The k best of candidates laid out lower gallery index first (ties keep the lower)."""
    top_scores, positions = jax.lax.top_k(scores, k)
    return top_scores, jnp.take_along_axis(indices, positions, axis=-1)


def checked_embeddings(embeddings, name: str) -> np.ndarray:
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[1] == 0:
        raise ValueError(f"{name} must be a [rows, width] array, got shape {embeddings.shape}")
    if not np.issubdtype(embeddings.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {embeddings.dtype}")
    return embeddings


def normalised_padded(embeddings: np.ndarray, row_multiple: int) -> np.ndarray:
    """float32 L2-normalised rows, zero rows appended up to a multiple of `row_multiple`."""
    num_rows = len(embeddings)
    padded_rows = max(1, -(-num_rows // row_multiple)) * row_multiple
    out = np.zeros((padded_rows, embeddings.shape[1]), np.float32)
    block_rows = 65536
    for start in range(0, num_rows, block_rows):
        block = embeddings[start : start + block_rows].astype(np.float32)
        bad_rows = ~np.isfinite(block).all(axis=1)
        norms = np.linalg.norm(block, axis=1)
        bad_rows |= ~(norms > 0)
        if bad_rows.any():
            row = start + int(np.argmax(bad_rows))
            raise ValueError(
                f"embedding row {row} is zero or not finite; cosine similarity "
                f"needs finite non-zero vectors ({int(bad_rows.sum())} bad rows in "
                f"rows {start}..{start + len(block) - 1})"
            )
        out[start : start + len(block)] = block / norms[:, None]
    return out


def _group_codes(
    query_groups, gallery_groups, num_queries: int, num_gallery: int
) -> tuple[np.ndarray, np.ndarray]:
    """Maps query and gallery group labels (any hashable dtype) to shared int codes."""
    query_groups = np.asarray(query_groups)
    gallery_groups = np.asarray(gallery_groups)
    if query_groups.shape != (num_queries,):
        raise ValueError(f"query_groups must have shape ({num_queries},), got {query_groups.shape}")
    if gallery_groups.shape != (num_gallery,):
        raise ValueError(
            f"gallery_groups must have shape ({num_gallery},), got {gallery_groups.shape}"
        )
    try:
        _, codes = np.unique(np.concatenate([query_groups, gallery_groups]), return_inverse=True)
    except TypeError as error:
        raise ValueError(f"query and gallery groups are not comparable: {error}") from error
    return codes[:num_queries].astype(np.int64), codes[num_queries:].astype(np.int64)


def _checked_self_index(
    query_gallery_index, query_codes: np.ndarray, gallery_codes: np.ndarray
) -> np.ndarray:
    num_queries, num_gallery = len(query_codes), len(gallery_codes)
    if query_gallery_index is None:
        return np.full(num_queries, -1, np.int64)
    self_index = np.asarray(query_gallery_index)
    if self_index.shape != (num_queries,) or not np.issubdtype(self_index.dtype, np.integer):
        raise ValueError(
            f"query_gallery_index must be {num_queries} integers, got "
            f"{self_index.dtype} {self_index.shape}"
        )
    out_of_range = (self_index < -1) | (self_index >= num_gallery)
    if out_of_range.any():
        query = int(np.argmax(out_of_range))
        raise ValueError(
            f"query_gallery_index[{query}] = {self_index[query]} is outside [-1, {num_gallery})"
        )
    in_gallery = self_index >= 0
    mismatched = in_gallery & (gallery_codes[np.where(in_gallery, self_index, 0)] != query_codes)
    if mismatched.any():
        query = int(np.argmax(mismatched))
        raise ValueError(
            f"query {query} and its gallery row {self_index[query]} have different "
            f"groups; query_gallery_index must point at the query's own listing"
        )
    return self_index.astype(np.int64)


def _checked_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    return ks
