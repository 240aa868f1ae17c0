"""The approximate index reports its recall against exact search, and it is measured right."""

import numpy as np

from item_jax.evaluation import ann_index


def _clustered(num_rows=4000, width=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, width))
    rows = centres[rng.integers(0, 50, num_rows)] + 0.3 * rng.normal(size=(num_rows, width))
    return rows.astype(np.float32)


def test_searching_every_cell_is_exact_and_fewer_cells_lose_recall():
    embeddings = _clustered()
    nlist = ann_index.default_nlist(len(embeddings))
    assert 1 < nlist <= len(embeddings) // 39
    exhaustive = ann_index.build_ivf_index(embeddings, nlist=nlist, nprobe=nlist)
    assert ann_index.recall_against_exact(exhaustive, embeddings, num_queries=300) == 1.0
    one_cell = ann_index.build_ivf_index(embeddings, nlist=nlist, nprobe=1)
    recall = ann_index.recall_against_exact(one_cell, embeddings, num_queries=300)
    assert 0.2 < recall < 1.0
