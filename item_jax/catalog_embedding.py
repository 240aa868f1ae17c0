"""Embedding a catalog manifest with an export: one `.npy`, or Parquet parts across hosts.

`embed_manifest` writes `OUT.npy` (float32 [N, embed_dim], L2-normalised, row i = listing
ids[i]) and `OUT.json` (ids, the export, counts, rejects) from one process.

`embed_manifest_parts` is the same work split over the processes of a `jax.distributed`
job (`item_jax/distributed.py`: TPU pod, SLURM, or explicit flags): process p of P embeds
the p-th contiguous range of the manifest's valid listings on its own devices and writes
`OUT/part-0000p-of-0000P.parquet` (columns `id`, `group`, `category` and `embedding`, a
fixed-size list of float32 or float16) with `OUT/part-....json` (its counts and rejects);
after a barrier, process 0 writes `OUT/index.json` listing the parts, their rows and
rejects, and the totals. The parts, concatenated in order, are the 1-process output.
Listings without a photo or a title are embedded from what they have; a listing whose
image cannot be read is rejected with its reason (counted per part, summed in the index),
never dropped silently.
"""

import io
import json
import os
import time

import numpy as np
import tqdm
from absl import logging

from item_jax import export, file_io
from item_jax.data import image_io, manifest

INDEX_FILE = "index.json"
EMBEDDING_DTYPES = ("float32", "float16")


def _embed_listings(model, listings, batch_size: int, show_progress: bool):
  """(kept listings, [rows, E] float32 embeddings, rejects) of `listings`, in order."""
  kept, vectors, rejects = [], [], []
  progress = tqdm.tqdm(total=len(listings), unit="listing", disable=not show_progress,
                       desc="embed")
  for start in range(0, len(listings), batch_size):
    images, titles, batch = [], [], []
    for listing in listings[start:start + batch_size]:
      try:
        images.append(model.stored_jpeg(listing.image_path) if listing.image_path else b"")
      except image_io.ImageRejected as rejected:
        rejects.append(dict(line=listing.line_number, id=listing.id, reason=rejected.reason,
                            detail=rejected.detail))
        continue
      titles.append(listing.title)
      batch.append(listing)
    if batch:
      vectors.append(model.embed_inputs(model.preprocess_stored(images, titles)))
      kept.extend(batch)
    progress.update(min(batch_size, len(listings) - start))
  progress.close()
  embeddings = (np.concatenate(vectors) if vectors
                else np.zeros((0, model.config.model.embed_dim), np.float32))
  return kept, embeddings.astype(np.float32), rejects


def _log_rejects(rejects: list[dict]) -> None:
  for reject in rejects[:10]:
    logging.warning("Rejected line %s (%s): %s %s", reject["line"], reject["id"],
                    reject["reason"], reject["detail"])


def embed_manifest(export_dir: str, manifest_path: str, out_prefix: str, *,
                   batch_size: int = 64, show_progress: bool = True) -> dict:
  """Embeds every valid listing of the manifest; returns the summary written to OUT.json."""
  model = export.load_exported(export_dir, batch_size=batch_size)
  contents = manifest.read_manifest(manifest_path, allow_empty_titles=True)
  kept, embeddings, image_rejects = _embed_listings(model, contents.listings, batch_size,
                                                    show_progress)
  rejects = [r.to_json_dict() for r in contents.rejects] + image_rejects
  ids = [listing.id for listing in kept]
  file_io.makedirs(os.path.dirname(file_io.absolute(out_prefix)))
  with file_io.open_file(out_prefix + ".npy", "wb") as f:
    np.save(f, embeddings)
  summary = dict(export=file_io.absolute(export_dir), manifest=file_io.absolute(manifest_path),
                 num_input_listings=contents.num_input_listings, num_embedded=len(ids),
                 num_rejected=len(rejects), embed_dim=int(embeddings.shape[1]), ids=ids,
                 rejects=rejects)
  with file_io.open_file(out_prefix + ".json", "w") as f:
    f.write(json.dumps(summary))
  logging.info("Embedded %d of %d listings (%d rejected) -> %s.npy", len(ids),
               contents.num_input_listings, len(rejects), out_prefix)
  _log_rejects(rejects)
  return summary


def part_name(index: int, count: int) -> str:
  return f"part-{index:05d}-of-{count:05d}"


def embed_manifest_parts(export_dir: str, manifest_path: str, out_dir: str, *,
                         process_index: int = 0, process_count: int = 1,
                         batch_size: int = 64, dtype: str = "float32",
                         show_progress: bool = True, barrier=None) -> dict:
  """This process's part of the catalog as Parquet; process 0 then writes the index.

  `barrier()` returns once every process has written its part (in a `jax.distributed`
  job: `multihost_utils.sync_global_devices`); not needed for one process.
  """
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

  if dtype not in EMBEDDING_DTYPES:
    raise ValueError(f"dtype must be one of {EMBEDDING_DTYPES}, got {dtype!r}")
  model = export.load_exported(export_dir, batch_size=batch_size)
  contents = manifest.read_manifest(manifest_path, allow_empty_titles=True)
  listings = contents.listings
  begin = len(listings) * process_index // process_count
  end = len(listings) * (process_index + 1) // process_count
  start_time = time.perf_counter()
  kept, embeddings, rejects = _embed_listings(model, listings[begin:end], batch_size,
                                              show_progress)
  seconds = time.perf_counter() - start_time
  if process_index == 0:  # Manifest lines that are not listings are counted once.
    rejects = [r.to_json_dict() for r in contents.rejects] + rejects
  width = int(model.config.model.embed_dim)
  value_type = pa.float32() if dtype == "float32" else pa.float16()
  flat = pa.array(embeddings.astype(np.dtype(dtype)).reshape(-1), type=value_type)
  table = pa.table({
      "id": pa.array([listing.id for listing in kept], pa.string()),
      "group": pa.array([listing.group for listing in kept], pa.string()),
      "category": pa.array([listing.category for listing in kept], pa.string()),
      "embedding": pa.FixedSizeListArray.from_arrays(flat, width)})
  file_io.makedirs(out_dir)
  name = part_name(process_index, process_count)
  buffer = io.BytesIO()
  pq.write_table(table, buffer)
  with file_io.open_file(os.path.join(out_dir, name + ".parquet"), "wb") as f:
    f.write(buffer.getvalue())
  part = dict(part=name + ".parquet", listings=[begin, end], rows=len(kept),
              rejected=len(rejects), seconds=round(seconds, 2),
              listings_per_s=round((end - begin) / max(seconds, 1e-9), 1), rejects=rejects)
  with file_io.open_file(os.path.join(out_dir, name + ".json"), "w") as f:
    f.write(json.dumps(part))
  logging.info("Part %s: embedded %d of listings %d..%d (%d rejected)", name, len(kept),
               begin, end, len(rejects))
  _log_rejects(rejects)
  if barrier is not None:
    barrier()
  if process_index != 0:
    return part
  parts = []
  for index in range(process_count):
    with file_io.open_file(os.path.join(out_dir, part_name(index, process_count) + ".json")) as f:
      parts.append({k: v for k, v in json.load(f).items() if k != "rejects"})
  index = dict(export=file_io.absolute(export_dir), manifest=file_io.absolute(manifest_path),
               embed_dim=width, dtype=dtype, num_input_listings=contents.num_input_listings,
               num_embedded=sum(p["rows"] for p in parts),
               num_rejected=sum(p["rejected"] for p in parts), parts=parts)
  with file_io.open_file(os.path.join(out_dir, INDEX_FILE), "w") as f:
    f.write(json.dumps(index, indent=2))
  return index


def read_parts(out_dir: str):
  """The parts listed in OUT/index.json, concatenated in order, as one pyarrow Table."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  with file_io.open_file(os.path.join(out_dir, INDEX_FILE)) as f:
    index = json.load(f)
  return pa.concat_tables([
      pq.read_table(io.BytesIO(file_io.read_bytes(os.path.join(out_dir, part["part"]))))
      for part in index["parts"]])
