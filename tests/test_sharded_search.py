"""Exact search over a gallery split across 8 devices equals the single-device search."""

import jax
import numpy as np

from item_jax.evaluation import retrieval, sharded_search


def _all(results):
    starts, scores, indices = zip(*results)
    return np.concatenate(scores), np.concatenate(indices)


def test_sharded_top_k_equals_single_device_ties_and_exclusions_included():
    assert jax.device_count() == 8
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(2500, 16)).astype(np.float32)
    gallery[1700:1710] = gallery[3]  # Exact ties across device slices.
    queries = np.concatenate([gallery[:150], rng.normal(size=(60, 16)).astype(np.float32)])
    exclude = np.concatenate([np.arange(150), np.full(60, -1)]).astype(np.int32)

    single = _all(
        retrieval.iter_cosine_top_k(
            queries, gallery, k=12, exclude_gallery_index=exclude, chunk_size=128
        )
    )
    sharded = _all(
        sharded_search.sharded_cosine_top_k(
            queries, gallery, k=12, exclude_gallery_index=exclude, chunk_size=128
        )
    )
    np.testing.assert_array_equal(sharded[1], single[1])
    np.testing.assert_array_equal(sharded[0], single[0])
    # Listing 3's ten exact copies rank first, tied, in gallery order across the slices.
    np.testing.assert_array_equal(sharded[1][3][:10], np.arange(1700, 1710))
    assert not (sharded[1][:150] == np.arange(150)[:, None]).any()  # Own rows never returned.


def test_each_device_holds_only_its_slice_and_k_beyond_the_gallery_pads():
    gallery = np.eye(8, dtype=np.float32)[np.arange(20) % 8] + 0.01
    scores, indices = _all(sharded_search.sharded_cosine_top_k(gallery[:2], gallery, k=25))
    assert (indices[:, 20:] == 20).all() and np.isneginf(scores[:, 20:]).all()
    single = _all(retrieval.iter_cosine_top_k(gallery[:2], gallery, k=25))
    np.testing.assert_array_equal(indices, single[1])
