"""Exact same-product search over a gallery sharded across devices.

Each device holds a contiguous slice of the gallery's tiles, ranks every query against its
slice (the tile scan of `retrieval.py`), and the per-device top-k lists are gathered and
merged, device order being gallery order. Scores come from the same fixed-shape tile
matmuls as the single-device search and ties still go to the lower gallery index, so the
result equals `retrieval.iter_cosine_top_k` exactly, while each device stores only
1/devices of the gallery: a gallery too large for one device's memory is searched by all
of them. Same interface as `iter_cosine_top_k`:

  for start, scores, indices in sharded_cosine_top_k(queries, gallery, k=10): ...

`python -m item_jax.cli.bench search` times both on a synthetic gallery.
"""

import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from item_jax.evaluation import retrieval

GALLERY_AXIS = "gallery"


def gallery_mesh(devices=None) -> Mesh:
    """A 1-D mesh over `devices` (default: all) along which the gallery is split."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (GALLERY_AXIS,))


def sharded_cosine_top_k(
    query_embeddings,
    gallery_embeddings,
    *,
    k: int,
    exclude_gallery_index=None,
    chunk_size: int = 4096,
    mesh: Mesh | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """`retrieval.iter_cosine_top_k` with the gallery split over `mesh` (default: all devices)."""
    queries, gallery, exclude = retrieval.checked_search_inputs(
        query_embeddings, gallery_embeddings, k, exclude_gallery_index, chunk_size
    )
    mesh = mesh or gallery_mesh()
    tile = retrieval.GALLERY_TILE_ROWS
    padded = retrieval.normalised_padded(gallery, tile * mesh.shape[GALLERY_AXIS])
    tiles = padded.reshape(-1, tile, gallery.shape[1])
    split = NamedSharding(mesh, PartitionSpec(GALLERY_AXIS))
    gallery_tiles = jax.device_put(tiles, split)  # Each device gets its slice only.
    gallery_starts = jax.device_put(np.arange(len(tiles), dtype=np.int32) * tile, split)
    search = _sharded_search(mesh, k)
    num_gallery = np.int32(len(gallery))
    yield from retrieval.iter_query_blocks(
        queries,
        exclude,
        chunk_size,
        k,
        lambda query_tiles, exclude_tiles: search(
            query_tiles, exclude_tiles, gallery_tiles, gallery_starts, num_gallery
        ),
    )


@functools.lru_cache(maxsize=16)
def _sharded_search(mesh: Mesh, k: int):
    """jit(shard_map(per-device top-k, gathered and merged)) for `mesh` and `k`."""

    def per_device(query_tiles, exclude_tiles, gallery_tiles, gallery_starts, num_gallery):
        scores, indices = retrieval.block_top_k(
            query_tiles, exclude_tiles, gallery_tiles, gallery_starts, num_gallery, k
        )
        # [devices, T, Tq, k] in device (= gallery) order -> [T, Tq, devices * k].
        gathered = [jax.lax.all_gather(x, GALLERY_AXIS) for x in (scores, indices)]
        scores, indices = (
            jnp.moveaxis(x, 0, 2).reshape(x.shape[1], x.shape[2], -1) for x in gathered
        )
        return retrieval.merge_top_k(scores, indices, k)

    replicated, split = PartitionSpec(), PartitionSpec(GALLERY_AXIS)
    return jax.jit(
        jax.shard_map(
            per_device,
            mesh=mesh,
            in_specs=(replicated, replicated, split, split, replicated),
            out_specs=replicated,
            check_vma=False,
        )
    )
