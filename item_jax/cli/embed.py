"""Embeds a catalog manifest with an exported model.

  python -m item_jax.cli.embed --export runs/demo/export \\
      --manifest runs/demo/catalog/manifest.jsonl --out runs/demo/embeddings

Writes `OUT.npy` (float32 [N, embed_dim], L2-normalised, row i = listing ids[i]) and
`OUT.json` (ids, the export, counts, rejects). Batches are jitted and split over all local
devices. Listings without a photo or a title are embedded from what they have; a listing
whose image cannot be read is rejected with its reason (counted, logged, listed in
OUT.json), never dropped silently.
"""

import json
import os

import numpy as np
import tqdm
from absl import flags, logging

from item_jax import export
from item_jax.cli import common
from item_jax.data import image_io, manifest


def embed_manifest(export_dir: str, manifest_path: str, out_prefix: str, *,
                   batch_size: int = 64, show_progress: bool = True) -> dict:
  """Embeds every valid listing of the manifest; returns the summary written to OUT.json."""
  model = export.load_exported(export_dir, batch_size=batch_size)
  contents = manifest.read_manifest(manifest_path, allow_empty_titles=True)
  rejects = [r.to_json_dict() for r in contents.rejects]
  ids, vectors = [], []
  listings = contents.listings
  progress = tqdm.tqdm(total=len(listings), unit="listing", disable=not show_progress,
                       desc="embed")
  for start in range(0, len(listings), batch_size):
    images, titles, batch_ids = [], [], []
    for listing in listings[start:start + batch_size]:
      try:
        images.append(model.stored_jpeg(listing.image_path) if listing.image_path else None)
      except image_io.ImageRejected as rejected:
        rejects.append(dict(line=listing.line_number, id=listing.id, reason=rejected.reason,
                            detail=rejected.detail))
        continue
      titles.append(listing.title)
      batch_ids.append(listing.id)
    if batch_ids:
      vectors.append(model.embed(images, titles))
      ids.extend(batch_ids)
    progress.update(min(batch_size, len(listings) - start))
  progress.close()
  embeddings = (np.concatenate(vectors) if vectors
                else np.zeros((0, model.config.model.embed_dim), np.float32))
  os.makedirs(os.path.dirname(os.path.abspath(out_prefix)), exist_ok=True)
  np.save(out_prefix + ".npy", embeddings.astype(np.float32))
  summary = dict(export=os.path.abspath(export_dir), manifest=os.path.abspath(manifest_path),
                 num_input_listings=contents.num_input_listings, num_embedded=len(ids),
                 num_rejected=len(rejects), embed_dim=int(embeddings.shape[1]), ids=ids,
                 rejects=rejects)
  with open(out_prefix + ".json", "w", encoding="utf-8") as f:
    json.dump(summary, f)
  logging.info("Embedded %d of %d listings (%d rejected) -> %s.npy", len(ids),
               contents.num_input_listings, len(rejects), out_prefix)
  for reject in rejects[:10]:
    logging.warning("Rejected line %s (%s): %s %s", reject["line"], reject["id"],
                    reject["reason"], reject["detail"])
  return summary


def define_flags():
  flags.DEFINE_string("export", None, "Export directory (python -m item_jax.cli.export).")
  flags.DEFINE_string("manifest", None, "JSONL or CSV manifest of listings.")
  flags.DEFINE_string("out", None, "Output prefix: writes OUT.npy and OUT.json.")
  flags.DEFINE_integer("batch_size", 64, "Listings per jitted batch.")


def main(argv):
  values = common.start(argv, "export", "manifest", "out")
  summary = embed_manifest(values.export, values.manifest, values.out,
                           batch_size=values.batch_size)
  print(json.dumps({k: v for k, v in summary.items() if k not in ("ids", "rejects")}))


def run():
  common.run(define_flags, main)


if __name__ == "__main__":
  run()
