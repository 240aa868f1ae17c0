"""Embeds a catalog (a manifest, or the converter's shards) with an exported model.

  python -m item_jax.cli.embed --export runs/demo/export \\
      --manifest runs/demo/catalog/manifest.jsonl --out runs/demo/embeddings
  python -m item_jax.cli.embed --export E --manifest M --out DIR --format parquet \\
      [--dtype float16] [--coordinator_address host:port --num_processes N --process_id I]
  python -m item_jax.cli.embed --export E --shards 'gs://B/shards/*.tfrecord' --out DIR \\
      --format parquet [the job flags]

`npy` (default, one process) writes OUT.npy and OUT.json; `parquet` writes one Parquet part
per process of the job (TPU pod, SLURM, or the explicit flags; `item_jax/distributed.py`)
and OUT/index.json. With `--shards` each process reads only its share of the shard files
(the input for catalogs past one machine); with `--manifest` each parses the whole
manifest. See `item_jax/catalog_embedding.py`.
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
    flags.DEFINE_string(
        "shards",
        None,
        "Instead of --manifest (parquet only): a glob of the "
        "converter's TFRecord shards, e.g. 'DIR/*.tfrecord'.",
    )
    flags.DEFINE_string(
        "out",
        None,
        "npy: output prefix (OUT.npy, OUT.json); parquet: a directory of parts and index.json.",
    )
    flags.DEFINE_enum("format", "npy", ["npy", "parquet"], "Output format.")
    flags.DEFINE_enum(
        "dtype",
        "float32",
        list(catalog_embedding.EMBEDDING_DTYPES),
        "parquet: stored embedding dtype.",
    )
    flags.DEFINE_integer("batch_size", 64, "Listings per jitted batch.")
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
    flags.DEFINE_integer("num_processes", None, "Processes in the job.")
    flags.DEFINE_integer("process_id", None, "This process's index.")


def main(argv):
    values = common.start(argv, "export", "out")
    if bool(values.manifest) == bool(values.shards):
        raise app.UsageError("Give exactly one of --manifest and --shards")
    if values.shards and values.format != "parquet":
        raise app.UsageError("--shards writes Parquet parts: add --format parquet")
    distributed.initialize_distributed(
        values.coordinator_address, values.num_processes, values.process_id
    )
    barrier = lambda: multihost_utils.sync_global_devices("item_jax embed parts written")
    if values.shards:
        summary = catalog_embedding.embed_shard_parts(
            values.export,
            values.shards,
            values.out,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            batch_size=values.batch_size,
            dtype=values.dtype,
            barrier=barrier,
        )
    elif values.format == "npy":
        if jax.process_count() > 1:
            raise app.UsageError(
                "--format npy is one process; use --format parquet for a job of "
                f"{jax.process_count()} processes"
            )
        summary = catalog_embedding.embed_manifest(
            values.export, values.manifest, values.out, batch_size=values.batch_size
        )
    else:
        summary = catalog_embedding.embed_manifest_parts(
            values.export,
            values.manifest,
            values.out,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            batch_size=values.batch_size,
            dtype=values.dtype,
            barrier=barrier,
        )
    print(json.dumps({k: v for k, v in summary.items() if k not in ("ids", "rejects", "parts")}))
    distributed.shutdown_distributed()


def run():
    common.run(define_flags, main)


if __name__ == "__main__":
    run()
