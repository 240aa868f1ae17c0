"""Nearest products of a new listing in an embedded catalog (what `cli/search.py` runs).

The catalog is either the Parquet parts of `embed --format parquet` (searched exactly,
`retrieval.iter_cosine_top_k`) or the faiss index of `build_ann_index` (searched
approximately; the listings' groups, categories and titles come from the parts it names).
The new listing (a title, a photo, or both) is embedded with an export exactly as `embed`
embeds the catalog, so that a listing already in the catalog finds itself at cosine ~1.

Bad input stops with a `SearchError` naming what is wrong: a photo that is missing or does
not decode, a listing with neither title nor photo, a catalog that is neither parts nor an
index, and a catalog embedded with another export (recorded by its fingerprint).
"""

import dataclasses
import json
import os

import jax
import numpy as np

from item_jax import catalog_embedding, export, file_io
from item_jax.data import image_io
from item_jax.model import product_embedding_width

ANN_INFO_FILE = "ann_info.json"
ANN_INDEX_FILE = "index.faiss"
ANN_IDS_FILE = "ids.json"


class SearchError(ValueError):
    """Input the search cannot use; the message names it."""


@dataclasses.dataclass
class Catalog:
    """An embedded catalog: its listings and either the vectors or a faiss index over them."""

    path: str
    kind: str  # "exact" (Parquet parts) or "faiss" (an ANN index).
    ids: list[str]
    groups: list[str]
    categories: list[str]
    titles: list[str]
    embed_dim: int
    export: str | None  # The export the catalog was embedded with, as recorded.
    export_fingerprint: str | None
    embeddings: np.ndarray | None = None  # [N, D] float32, for exact search.
    index: object = None  # faiss index, for approximate search.


def _read_json(path: str) -> dict:
    with file_io.open_file(path) as f:
        return json.load(f)


def _parts_listings(parts_dir: str):
    """(table, index.json) of embedded parts; an error naming the folder when they are not."""
    index_path = os.path.join(parts_dir, catalog_embedding.INDEX_FILE)
    if not file_io.exists(index_path):
        raise SearchError(
            f"--embeddings {parts_dir}: neither Parquet parts ({index_path} is "
            f"missing; write them with `embed --format parquet`) nor a faiss index "
            f"({os.path.join(parts_dir, ANN_INFO_FILE)} is missing; "
            "`build_ann_index`)"
        )
    return catalog_embedding.read_parts(parts_dir), _read_json(index_path)


def _column(table, name: str) -> list[str]:
    # Parts written before titles were stored have no title column: show nothing, not fail.
    if name not in table.column_names:
        return [""] * len(table)
    return table.column(name).to_pylist()


def load_catalog(path: str) -> Catalog:
    """The catalog at `path`: a faiss index folder (ann_info.json) or Parquet parts."""
    ann_info_path = os.path.join(path, ANN_INFO_FILE)
    if file_io.exists(ann_info_path):
        return _load_ann_catalog(path, _read_json(ann_info_path))
    table, index = _parts_listings(path)
    if len(table) == 0:
        raise SearchError(f"--embeddings {path}: the parts hold no embedded listings")
    width = table.schema.field("embedding").type.list_size
    embeddings = (
        table.column("embedding")
        .combine_chunks()
        .flatten()
        .to_numpy(zero_copy_only=False)
        .astype(np.float32)
        .reshape(-1, width)
    )
    return Catalog(
        path=path,
        kind="exact",
        ids=_column(table, "id"),
        groups=_column(table, "group"),
        categories=_column(table, "category"),
        titles=_column(table, "title"),
        embed_dim=int(width),
        export=index.get("export"),
        export_fingerprint=index.get("export_fingerprint"),
        embeddings=embeddings,
    )


def _load_ann_catalog(path: str, info: dict) -> Catalog:
    import faiss  # pylint: disable=g-import-not-at-top

    parts_dir = info.get("embeddings")
    if not parts_dir:
        raise SearchError(
            f"--embeddings {path}: its {ANN_INFO_FILE} does not name the parts it "
            "was built from (build it again with `build_ann_index`)"
        )
    try:
        table, _ = _parts_listings(parts_dir)
    except SearchError as error:
        raise SearchError(
            f"the faiss index {path} was built from {parts_dir}, which cannot be read: {error}"
        ) from error
    ids = _column(table, "id")
    if ids != _read_json(os.path.join(path, ANN_IDS_FILE)):
        raise SearchError(
            f"the faiss index {path} does not match the parts {parts_dir} it names "
            "(their listing ids differ): build the index again"
        )
    index = faiss.deserialize_index(
        np.frombuffer(file_io.read_bytes(os.path.join(path, ANN_INDEX_FILE)), np.uint8)
    )
    return Catalog(
        path=path,
        kind="faiss",
        ids=ids,
        groups=_column(table, "group"),
        categories=_column(table, "category"),
        titles=_column(table, "title"),
        embed_dim=int(index.d),
        export=info.get("export"),
        export_fingerprint=info.get("export_fingerprint"),
        index=index,
    )


def check_same_export(catalog: Catalog, export_dir: str, model) -> None:
    """Refuses a catalog embedded with another export (fingerprint, else the width)."""
    width = product_embedding_width(model.config.model)
    if catalog.embed_dim != width:
        raise SearchError(
            f"--embeddings {catalog.path} holds {catalog.embed_dim}-d embeddings but "
            f"--export {export_dir} embeds in {width} dimensions: the catalog was "
            f"built with another export ({catalog.export})"
        )
    fingerprint = export.export_fingerprint(export_dir)
    if catalog.export_fingerprint and catalog.export_fingerprint != fingerprint:
        raise SearchError(
            f"--embeddings {catalog.path} was built with the export "
            f"{catalog.export} (fingerprint {catalog.export_fingerprint}), not with "
            f"--export {export_dir} (fingerprint {fingerprint}): its vectors are in "
            "another space; embed the catalog again with this export"
        )


def embed_listing(model, title: str | None, image_path: str | None) -> np.ndarray:
    """The [D] embedding of one new listing (title only, photo only, or both)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    title = (title or "").strip()
    if not title and not image_path:
        raise SearchError("the listing is empty: give a non-empty --title, an --image, or both")
    stored = b""
    if image_path:
        if not os.path.isfile(image_path):
            raise SearchError(f"--image {image_path}: no such file")
        try:
            stored = model.stored_jpeg(image_path)
        except image_io.ImageRejected as rejected:
            raise SearchError(
                f"--image {image_path} cannot be used: {rejected.reason} ({rejected.detail})"
            ) from rejected
    try:
        inputs = model.preprocess_stored([stored], [title])
    except tf.errors.OpError as error:
        raise SearchError(
            f"--image {image_path} does not decode: {error.message.splitlines()[0]}"
        ) from error
    if not inputs["has_title"][0] and not inputs["has_image"][0]:
        raise SearchError(
            f"the title {title!r} holds no text the tokenizer keeps, and there is "
            "no --image: nothing to embed"
        )
    return model.embed_inputs(inputs)[0]


def nearest(catalog: Catalog, vector: np.ndarray, k: int) -> list[dict]:
    """The k nearest listings of `vector`, best first: rank, score, id, group, category, title."""
    from item_jax.evaluation import retrieval  # pylint: disable=g-import-not-at-top

    if k < 1:
        raise SearchError(f"--k must be at least 1, got {k}")
    query = np.asarray(vector, np.float32)[None]
    query = query / max(float(np.linalg.norm(query)), 1e-12)
    if catalog.kind == "faiss":
        scores, indices = catalog.index.search(np.ascontiguousarray(query), k)
        hits = zip(scores[0], indices[0])
    else:
        _, scores, indices = next(
            iter(retrieval.iter_cosine_top_k(query, catalog.embeddings, k=min(k, len(catalog.ids))))
        )
        hits = zip(scores[0], indices[0])
    results = []
    for score, row in hits:
        if row < 0 or row >= len(catalog.ids):  # faiss pads with -1 when cells run short.
            continue
        results.append(
            dict(
                rank=len(results) + 1,
                score=round(float(score), 4),
                id=catalog.ids[row],
                group=catalog.groups[row],
                category=catalog.categories[row],
                title=catalog.titles[row],
            )
        )
    return results


def search(
    export_dir: str,
    catalog_path: str,
    *,
    title: str | None = None,
    image_path: str | None = None,
    k: int = 10,
    nprobe: int | None = None,
) -> dict:
    """Embeds the listing with the export and returns its nearest listings in the catalog."""
    if not title or not title.strip():
        if not image_path:
            raise SearchError("the listing is empty: give a non-empty --title, an --image, or both")
    # One listing, padded to one row a device (the embedding splits rows over the devices).
    model = export.load_exported(export_dir, batch_size=jax.local_device_count())
    catalog = load_catalog(catalog_path)
    check_same_export(catalog, export_dir, model)
    if nprobe is not None and catalog.kind == "faiss":
        catalog.index.nprobe = nprobe
    vector = embed_listing(model, title, image_path)
    return dict(
        query=dict(title=title or "", image=image_path or None),
        catalog=catalog_path,
        search=catalog.kind,
        num_listings=len(catalog.ids),
        results=nearest(catalog, vector, k),
    )


def format_table(result: dict) -> str:
    """The results as an aligned text table (titles cut to 60 characters)."""
    rows = [("rank", "score", "id", "group", "category", "title")]
    rows += [
        (
            str(r["rank"]),
            f"{r['score']:.4f}",
            r["id"],
            r["group"],
            r["category"],
            r["title"] if len(r["title"]) <= 60 else r["title"][:57] + "...",
        )
        for r in result["results"]
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        f"{result['search']} search of {result['num_listings']} listings in {result['catalog']}"
    ]
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    ]
    return "\n".join(lines)
