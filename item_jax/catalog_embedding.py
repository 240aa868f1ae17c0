"""Embedding a catalog manifest with an export: one `.npy`, or Parquet parts across hosts.

`embed_manifest` writes `OUT.npy` (float32 [N, width], L2-normalised, row i = listing
ids[i]) and `OUT.json` (ids, the export, counts, rejects) from one process.

`embed_manifest_parts` is the same work split over the processes of a `jax.distributed`
job (`item_jax/distributed.py`: TPU pod, SLURM, or explicit flags): process p of P embeds
the p-th contiguous range of the manifest's valid listings on its own devices and writes
`OUT/part-0000p-of-0000P.parquet` (columns `id`, `group`, `category`, `title` and
`embedding`, a fixed-size list of float32 or float16) with `OUT/part-....json` (its counts
and rejects);
after a barrier, process 0 writes `OUT/index.json` listing the parts, their rows and
rejects, the totals and the export's fingerprint (`export.export_fingerprint`, which
`search` checks its query's export against). The parts, concatenated in order, are the
1-process output.
Every process parses the whole manifest (duplicate ids are found across all of it).

`embed_shard_parts` does the same from the converter's TFRecord shards (already cleaned,
de-duplicated and re-encoded): process p reads only the p-th contiguous range of the sorted
shard files, so no process reads the whole catalog. This is the input for catalogs past
one machine.

Listings without a photo or a title are embedded from what they have; a listing whose
image cannot be read, and the unreadable rest of a corrupt shard, are rejected with their
reason (counted per part, summed in the index), never dropped silently.
"""

import dataclasses
import io
import json
import os
import time

import numpy as np
import tqdm
from absl import logging

from item_jax import export, file_io
from item_jax.data import image_io, manifest
from item_jax.model import product_embedding_width

INDEX_FILE = "index.json"
EMBEDDING_DTYPES = ("float32", "float16")


@dataclasses.dataclass(frozen=True)
class ShardListing:
    """One record of a converted shard: the listing's fields and its stored JPEG."""

    id: str
    group: str
    category: str
    title: str
    jpeg: bytes
    where: dict  # {"shard": path, "record": index}, for a reject.


def _stored_image(model, listing) -> bytes:
    if isinstance(listing, ShardListing):
        return listing.jpeg
    return model.stored_jpeg(listing.image_path) if listing.image_path else b""


def _reject(listing, reason: str, detail: str) -> dict:
    where = listing.where if isinstance(listing, ShardListing) else dict(line=listing.line_number)
    return dict(**where, id=listing.id, reason=reason, detail=detail)


def _model_inputs(model, images, titles, batch):
    """Inputs of the batch; a stored image that does not decode is rejected, not fatal."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    try:
        return model.preprocess_stored(images, titles), batch, []
    except tf.errors.OpError:
        pass
    kept, rejects = [], []
    for image, title, listing in zip(images, titles, batch):
        try:
            model.preprocess_stored([image], [title])
            kept.append((image, title, listing))
        except tf.errors.OpError as error:
            rejects.append(_reject(listing, "undecodable_image", error.message.splitlines()[0]))
    if not kept:
        return None, [], rejects
    images, titles, batch = map(list, zip(*kept))
    return model.preprocess_stored(images, titles), batch, rejects


def _embed_listings(model, listings, batch_size: int, show_progress: bool):
    """(kept listings, [rows, E] float32 embeddings, rejects) of `listings`, in order."""
    kept, vectors, rejects = [], [], []
    progress = tqdm.tqdm(
        total=len(listings), unit="listing", disable=not show_progress, desc="embed"
    )
    for start in range(0, len(listings), batch_size):
        images, titles, batch = [], [], []
        for listing in listings[start : start + batch_size]:
            try:
                images.append(_stored_image(model, listing))
            except image_io.ImageRejected as rejected:
                rejects.append(_reject(listing, rejected.reason, rejected.detail))
                continue
            titles.append(listing.title)
            batch.append(listing)
        if batch:
            inputs, batch, undecodable = _model_inputs(model, images, titles, batch)
            rejects.extend(undecodable)
            if batch:
                vectors.append(model.embed_inputs(inputs))
                kept.extend(batch)
        progress.update(min(batch_size, len(listings) - start))
    progress.close()
    embeddings = (
        np.concatenate(vectors)
        if vectors
        else np.zeros((0, product_embedding_width(model.config.model)), np.float32)
    )
    return kept, embeddings.astype(np.float32), rejects


def _log_rejects(rejects: list[dict]) -> None:
    for reject in rejects[:10]:
        where = (
            f"line {reject['line']}"
            if "line" in reject
            else f"{reject['shard']} record {reject['record']}"
        )
        logging.warning(
            "Rejected %s (%s): %s %s", where, reject["id"], reject["reason"], reject["detail"]
        )


def embed_manifest(
    export_dir: str,
    manifest_path: str,
    out_prefix: str,
    *,
    batch_size: int = 64,
    show_progress: bool = True,
) -> dict:
    """Embeds every valid listing of the manifest; returns the summary written to OUT.json."""
    model = export.load_exported(export_dir, batch_size=batch_size)
    contents = manifest.read_manifest(manifest_path, allow_empty_titles=True)
    kept, embeddings, image_rejects = _embed_listings(
        model, contents.listings, batch_size, show_progress
    )
    rejects = [r.to_json_dict() for r in contents.rejects] + image_rejects
    ids = [listing.id for listing in kept]
    file_io.makedirs(os.path.dirname(file_io.absolute(out_prefix)))
    with file_io.open_file(out_prefix + ".npy", "wb") as f:
        np.save(f, embeddings)
    summary = dict(
        export=file_io.absolute(export_dir),
        export_fingerprint=export.export_fingerprint(export_dir),
        manifest=file_io.absolute(manifest_path),
        num_input_listings=contents.num_input_listings,
        num_embedded=len(ids),
        num_rejected=len(rejects),
        embed_dim=int(embeddings.shape[1]),
        ids=ids,
        rejects=rejects,
    )
    with file_io.open_file(out_prefix + ".json", "w") as f:
        f.write(json.dumps(summary))
    logging.info(
        "Embedded %d of %d listings (%d rejected) -> %s.npy",
        len(ids),
        contents.num_input_listings,
        len(rejects),
        out_prefix,
    )
    _log_rejects(rejects)
    return summary


def part_name(index: int, count: int) -> str:
    return f"part-{index:05d}-of-{count:05d}"


def _check_dtype(dtype: str) -> None:
    if dtype not in EMBEDDING_DTYPES:
        raise ValueError(f"dtype must be one of {EMBEDDING_DTYPES}, got {dtype!r}")


def embed_manifest_parts(
    export_dir: str,
    manifest_path: str,
    out_dir: str,
    *,
    process_index: int = 0,
    process_count: int = 1,
    batch_size: int = 64,
    dtype: str = "float32",
    show_progress: bool = True,
    barrier=None,
) -> dict:
    """This process's part of the manifest as Parquet; process 0 then writes the index.

    `barrier()` returns once every process has written its part (in a `jax.distributed`
    job: `multihost_utils.sync_global_devices`); not needed for one process.
    """
    _check_dtype(dtype)
    model = export.load_exported(export_dir, batch_size=batch_size)
    contents = manifest.read_manifest(manifest_path, allow_empty_titles=True)
    listings = contents.listings
    begin = len(listings) * process_index // process_count
    end = len(listings) * (process_index + 1) // process_count
    start_time = time.perf_counter()
    kept, embeddings, rejects = _embed_listings(
        model, listings[begin:end], batch_size, show_progress
    )
    seconds = time.perf_counter() - start_time
    if process_index == 0:  # Manifest lines that are not listings are counted once.
        rejects = [r.to_json_dict() for r in contents.rejects] + rejects
    part = dict(
        listings=[begin, end],
        seconds=round(seconds, 2),
        listings_per_s=round((end - begin) / max(seconds, 1e-9), 1),
    )
    _write_part(
        out_dir, process_index, process_count, model, kept, embeddings, rejects, dtype, part
    )
    if barrier is not None:
        barrier()
    if process_index != 0:
        return part
    return _write_index(
        out_dir,
        process_count,
        dict(
            export=file_io.absolute(export_dir),
            export_fingerprint=export.export_fingerprint(export_dir),
            manifest=file_io.absolute(manifest_path),
            embed_dim=product_embedding_width(model.config.model),
            dtype=dtype,
            num_input_listings=contents.num_input_listings,
        ),
    )


def shard_files(shards: str) -> list[str]:
    """The sorted files matching the glob `shards` (local or a URL); an error if none."""
    files = sorted(file_io.glob(shards))
    if not files:
        raise FileNotFoundError(
            f"No shard files match {shards!r} (the converter writes "
            "DIR/{train,validation,test}-k-of-n.tfrecord)"
        )
    return files


def read_shard_listings(path: str) -> tuple[list[ShardListing], list[dict]]:
    """The records of one converted shard, and a reject for a corrupt rest of the file."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    def text(features, key):
        values = features[key].bytes_list.value if key in features else []
        return values[0].decode("utf-8") if values else ""

    listings, rejects = [], []
    records = iter(tf.data.TFRecordDataset(path).as_numpy_iterator())
    while True:
        record = len(listings)
        try:
            serialized = next(records)
        except StopIteration:
            break
        except tf.errors.OpError as error:  # DataLossError: truncated or corrupt record.
            rejects.append(
                dict(
                    shard=path,
                    record=record,
                    id="?",
                    reason="corrupt_shard",
                    detail="records from here on unreadable: " + error.message.splitlines()[0],
                )
            )
            break
        features = tf.train.Example.FromString(serialized).features.feature
        jpeg = features["image"].bytes_list.value[0] if "image" in features else b""
        listings.append(
            ShardListing(
                id=text(features, "id"),
                group=text(features, "group"),
                category=text(features, "category"),
                title=text(features, "title"),
                jpeg=jpeg,
                where=dict(shard=path, record=record),
            )
        )
    return listings, rejects


def embed_shard_parts(
    export_dir: str,
    shards: str,
    out_dir: str,
    *,
    process_index: int = 0,
    process_count: int = 1,
    batch_size: int = 64,
    dtype: str = "float32",
    show_progress: bool = True,
    barrier=None,
) -> dict:
    """This process's share of the converted shards (glob `shards`) as a Parquet part.

    Process p reads only files [n*p/P, n*(p+1)/P) of the n sorted files; process 0 then
    writes the index as `embed_manifest_parts` does.
    """
    _check_dtype(dtype)
    files = shard_files(shards)
    begin = len(files) * process_index // process_count
    end = len(files) * (process_index + 1) // process_count
    model = export.load_exported(export_dir, batch_size=batch_size)
    start_time = time.perf_counter()
    kept, vectors, rejects, records = [], [], [], 0
    for path in files[begin:end]:  # One shard's records in memory at a time.
        listings, shard_rejects = read_shard_listings(path)
        shard_kept, shard_vectors, image_rejects = _embed_listings(
            model, listings, batch_size, show_progress
        )
        kept.extend(shard_kept)
        vectors.append(shard_vectors)
        rejects.extend(shard_rejects + image_rejects)
        records += len(listings)
    embeddings = (
        np.concatenate(vectors)
        if vectors
        else np.zeros((0, product_embedding_width(model.config.model)), np.float32)
    )
    seconds = time.perf_counter() - start_time
    part = dict(
        shards=[begin, end],
        files=files[begin:end],
        records=records,
        seconds=round(seconds, 2),
        listings_per_s=round(records / max(seconds, 1e-9), 1),
    )
    _write_part(
        out_dir, process_index, process_count, model, kept, embeddings, rejects, dtype, part
    )
    if barrier is not None:
        barrier()
    if process_index != 0:
        return part
    return _write_index(
        out_dir,
        process_count,
        dict(
            export=file_io.absolute(export_dir),
            export_fingerprint=export.export_fingerprint(export_dir),
            shards=file_io.absolute(shards),
            num_shard_files=len(files),
            embed_dim=product_embedding_width(model.config.model),
            dtype=dtype,
        ),
    )


def _write_part(
    out_dir, process_index, process_count, model, kept, embeddings, rejects, dtype, part
) -> None:
    """OUT/part-....parquet (the rows) and OUT/part-....json (`part`, counts, rejects)."""
    import pyarrow as pa  # pylint: disable=g-import-not-at-top
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

    width = product_embedding_width(model.config.model)
    value_type = pa.float32() if dtype == "float32" else pa.float16()
    flat = pa.array(embeddings.astype(np.dtype(dtype)).reshape(-1), type=value_type)
    table = pa.table(
        {
            "id": pa.array([listing.id for listing in kept], pa.string()),
            "group": pa.array([listing.group for listing in kept], pa.string()),
            "category": pa.array([listing.category for listing in kept], pa.string()),
            # What a person reads in a search result; the ids alone say nothing.
            "title": pa.array([listing.title for listing in kept], pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, width),
        }
    )
    file_io.makedirs(out_dir)
    name = part_name(process_index, process_count)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    with file_io.open_file(os.path.join(out_dir, name + ".parquet"), "wb") as f:
        f.write(buffer.getvalue())
    part.update(part=name + ".parquet", rows=len(kept), rejected=len(rejects))
    with file_io.open_file(os.path.join(out_dir, name + ".json"), "w") as f:
        f.write(json.dumps(dict(part, rejects=rejects)))
    logging.info("Part %s: embedded %d listings (%d rejected)", name, len(kept), len(rejects))
    _log_rejects(rejects)


def _write_index(out_dir: str, process_count: int, header: dict) -> dict:
    """OUT/index.json: `header`, every part's summary, and the summed rows and rejects."""
    parts = []
    for index in range(process_count):
        with file_io.open_file(
            os.path.join(out_dir, part_name(index, process_count) + ".json")
        ) as f:
            parts.append({k: v for k, v in json.load(f).items() if k != "rejects"})
    index = dict(
        header,
        num_embedded=sum(p["rows"] for p in parts),
        num_rejected=sum(p["rejected"] for p in parts),
        parts=parts,
    )
    if "num_input_listings" not in index:
        index["num_input_listings"] = sum(p["records"] for p in parts)
    with file_io.open_file(os.path.join(out_dir, INDEX_FILE), "w") as f:
        f.write(json.dumps(index, indent=2))
    return index


def read_parts(out_dir: str):
    """The parts listed in OUT/index.json, concatenated in order, as one pyarrow Table."""
    import pyarrow as pa  # pylint: disable=g-import-not-at-top
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

    with file_io.open_file(os.path.join(out_dir, INDEX_FILE)) as f:
        index = json.load(f)
    return pa.concat_tables(
        [
            pq.read_table(io.BytesIO(file_io.read_bytes(os.path.join(out_dir, part["part"]))))
            for part in index["parts"]
        ]
    )
