"""An approximate same-product index for serving, built from embedded Parquet parts (faiss).

  python -m item_jax.cli.build_ann_index --embeddings runs/demo/catalog_parts \
      --out runs/demo/ann [--nlist N] [--nprobe 16] [--queries 1000]

faiss's inverted-file index (`IndexIVFFlat`, inner product on the L2-normalised
embeddings, i.e. cosine): `nlist` k-means cells (default about 4 sqrt(N), at least 39
training rows per cell), `nprobe` cells searched per query. Building it also measures what
the approximation costs: recall@k of the index against exact search
(`retrieval.iter_cosine_top_k`) for a seeded sample of gallery rows used as queries (each
query's own row left out of both), printed and written next to the index.
Writes OUT/index.faiss, OUT/ids.json (row i of the index is listing ids[i]) and
OUT/ann_info.json, which also names the parts it was built from and their export's
fingerprint (`search` reads the listings' titles from the parts and refuses a query
embedded with another export).
"""

import json
import os

import numpy as np

from item_jax import file_io
from item_jax.evaluation import retrieval


def default_nlist(num_rows: int) -> int:
    return max(1, min(int(4 * np.sqrt(num_rows)), num_rows // 39))


def build_ivf_index(
    embeddings: np.ndarray, *, nlist: int | None = None, nprobe: int = 16, seed: int = 0
):
    """A trained, filled `faiss.IndexIVFFlat` over the rows of `embeddings` (normalised)."""
    import faiss  # pylint: disable=g-import-not-at-top

    vectors = np.ascontiguousarray(retrieval.normalised_padded(embeddings, 1)[: len(embeddings)])
    nlist = nlist or default_nlist(len(vectors))
    quantizer = faiss.IndexFlatIP(vectors.shape[1])
    index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(vectors)
    index.add(vectors)
    index.nprobe = min(nprobe, nlist)
    return index


def recall_against_exact(
    index, embeddings: np.ndarray, *, k: int = 10, num_queries: int = 1000, seed: int = 0
) -> float:
    """Mean |ANN top-k ∩ exact top-k| / k over a seeded sample of rows used as queries."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(embeddings), min(num_queries, len(embeddings)), replace=False))
    queries = np.ascontiguousarray(retrieval.normalised_padded(embeddings[rows], 1)[: len(rows)])
    exact = np.concatenate(
        [
            indices
            for _, _, indices in retrieval.iter_cosine_top_k(
                queries, embeddings, k=k, exclude_gallery_index=rows.astype(np.int32)
            )
        ]
    )
    _, approximate = index.search(queries, k + 1)
    found = []
    for row, ann, truth in zip(rows, approximate, exact):
        ann = [i for i in ann if i != row and i >= 0][:k]
        truth = [i for i in truth if i < len(embeddings)]
        found.append(len(set(ann) & set(truth)) / max(len(truth), 1))
    return float(np.mean(found))


def build_from_parts(
    parts_dir: str,
    out_dir: str,
    *,
    nlist: int | None = None,
    nprobe: int = 16,
    num_queries: int = 1000,
    k: int = 10,
    seed: int = 0,
) -> dict:
    """Builds, measures and writes the index of the parts in `parts_dir` (its index.json)."""
    import faiss  # pylint: disable=g-import-not-at-top

    from item_jax import catalog_embedding  # pylint: disable=g-import-not-at-top

    table = catalog_embedding.read_parts(parts_dir)
    with file_io.open_file(os.path.join(parts_dir, catalog_embedding.INDEX_FILE)) as f:
        parts_index = json.load(f)
    if len(table) == 0:
        raise ValueError(f"{parts_dir} holds no embedded listings")
    width = table.schema.field("embedding").type.list_size
    embeddings = (
        table.column("embedding")
        .combine_chunks()
        .flatten()
        .to_numpy(zero_copy_only=False)
        .astype(np.float32)
        .reshape(-1, width)
    )
    index = build_ivf_index(embeddings, nlist=nlist, nprobe=nprobe, seed=seed)
    recall = recall_against_exact(index, embeddings, k=k, num_queries=num_queries, seed=seed)
    file_io.makedirs(out_dir)
    with file_io.open_file(os.path.join(out_dir, "index.faiss"), "wb") as f:
        f.write(faiss.serialize_index(index).tobytes())
    with file_io.open_file(os.path.join(out_dir, "ids.json"), "w") as f:
        f.write(json.dumps(table.column("id").to_pylist()))
    info = dict(
        kind="faiss.IndexIVFFlat",
        metric="inner_product (cosine)",
        embeddings=file_io.absolute(parts_dir),
        export=parts_index.get("export"),
        export_fingerprint=parts_index.get("export_fingerprint"),
        rows=len(embeddings),
        width=int(width),
        nlist=int(index.nlist),
        nprobe=int(index.nprobe),
        k=k,
        recall_queries=min(num_queries, len(embeddings)),
        **{f"recall@{k}_vs_exact": round(recall, 4)},
    )
    with file_io.open_file(os.path.join(out_dir, "ann_info.json"), "w") as f:
        f.write(json.dumps(info, indent=2))
    return info
