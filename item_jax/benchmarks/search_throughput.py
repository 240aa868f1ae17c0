"""Exact top-k throughput: queries/s over a synthetic gallery, single-device and sharded.

  python -m item_jax.cli.bench search [--gallery_rows 1000000] [--width 256] \
      [--queries 2048] [--k 10]

The gallery is random unit vectors (float32). The timed call is a second identical one
(compiled already); it includes normalising and placing the gallery on the devices (about
1 GB at the default size), as a search of a freshly loaded gallery does.
"""

import time

import jax
import numpy as np

from item_jax.evaluation import retrieval, sharded_search


def _time(search, queries, gallery, k: int) -> float:
    for _ in search(queries, gallery, k=k, chunk_size=len(queries)):  # Compile the same shape.
        pass
    start = time.perf_counter()
    for _ in search(queries, gallery, k=k, chunk_size=len(queries)):
        pass
    return time.perf_counter() - start


def benchmark_search(
    *,
    gallery_rows: int = 1_000_000,
    width: int = 256,
    queries: int = 2048,
    k: int = 10,
    seed: int = 0,
) -> dict:
    rng = np.random.default_rng(seed)
    gallery = rng.standard_normal((gallery_rows, width), dtype=np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    query_rows = gallery[rng.integers(0, gallery_rows, queries)] + 0.1 * rng.standard_normal(
        (queries, width), dtype=np.float32
    )
    single_s = _time(retrieval.iter_cosine_top_k, query_rows, gallery, k)
    sharded_s = _time(sharded_search.sharded_cosine_top_k, query_rows, gallery, k)
    return dict(
        benchmark="exact_top_k",
        backend=jax.default_backend(),
        num_devices=jax.device_count(),
        gallery_rows=gallery_rows,
        width=width,
        queries=queries,
        k=k,
        single_device_queries_per_s=round(queries / single_s, 1),
        sharded_queries_per_s=round(queries / sharded_s, 1),
        gallery_gflop_per_query=round(2 * gallery_rows * width / 1e9, 3),
    )
