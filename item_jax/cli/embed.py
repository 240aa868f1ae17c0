"""Embeds a catalog manifest with an exported model.

  python -m item_jax.cli.embed --export runs/demo/export \\
      --manifest runs/demo/catalog/manifest.jsonl --out runs/demo/embeddings
  python -m item_jax.cli.embed --export E --manifest M --out DIR --format parquet \\
      [--dtype float16] [--coordinator_address host:port --num_processes N --process_id I]

`npy` (default, one process) writes OUT.npy and OUT.json; `parquet` writes one Parquet part
per process of the job (TPU pod, SLURM, or the explicit flags; `item_jax/distributed.py`)
and OUT/index.json. See `item_jax/catalog_embedding.py`.
"""

import json

import jax
from absl import app, flags
from jax.experimental import multihost_utils

from item_jax import catalog_embedding, distributed
from item_jax.cli import common


def define_flags():
  flags.DEFINE_string("export", None, "Export directory (python -m item_jax.cli.export).")
  flags.DEFINE_string("manifest", None, "JSONL or CSV manifest of listings.")
  flags.DEFINE_string("out", None, "npy: output prefix (OUT.npy, OUT.json); parquet: a "
                      "directory of parts and index.json.")
  flags.DEFINE_enum("format", "npy", ["npy", "parquet"], "Output format.")
  flags.DEFINE_enum("dtype", "float32", list(catalog_embedding.EMBEDDING_DTYPES),
                    "parquet: stored embedding dtype.")
  flags.DEFINE_integer("batch_size", 64, "Listings per jitted batch.")
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
  flags.DEFINE_integer("num_processes", None, "Processes in the job.")
  flags.DEFINE_integer("process_id", None, "This process's index.")


def main(argv):
  values = common.start(argv, "export", "manifest", "out")
  distributed.initialize_distributed(values.coordinator_address, values.num_processes,
                                     values.process_id)
  if values.format == "npy":
    if jax.process_count() > 1:
      raise app.UsageError("--format npy is one process; use --format parquet for a job of "
                           f"{jax.process_count()} processes")
    summary = catalog_embedding.embed_manifest(values.export, values.manifest, values.out,
                                               batch_size=values.batch_size)
  else:
    summary = catalog_embedding.embed_manifest_parts(
        values.export, values.manifest, values.out, process_index=jax.process_index(),
        process_count=jax.process_count(), batch_size=values.batch_size, dtype=values.dtype,
        barrier=lambda: multihost_utils.sync_global_devices("item_jax embed parts written"))
  print(json.dumps({k: v for k, v in summary.items() if k not in ("ids", "rejects", "parts")}))
  distributed.shutdown_distributed()


def run():
  common.run(define_flags, main)


if __name__ == "__main__":
  run()
