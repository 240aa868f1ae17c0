"""Builds the approximate serving index from embedded Parquet parts and reports its recall.

  python -m item_jax.cli.embed --export E --manifest M --out runs/parts --format parquet
  python -m item_jax.cli.build_ann_index --embeddings runs/parts --out runs/ann \
      [--nlist N] [--nprobe 16] [--queries 1000] [--k 10]

Prints one JSON line with recall@k of the index against exact search
(`item_jax/evaluation/ann_index.py`).
"""

import json

from absl import flags

from item_jax.cli import common
from item_jax.evaluation import ann_index


def define_flags():
    flags.DEFINE_string("embeddings", None, "Directory of Parquet parts (embed --format parquet).")
    flags.DEFINE_string("out", None, "Directory for index.faiss, ids.json, ann_info.json.")
    flags.DEFINE_integer("nlist", None, "k-means cells (default about 4 sqrt(rows)).")
    flags.DEFINE_integer("nprobe", 16, "Cells searched per query.")
    flags.DEFINE_integer("queries", 1000, "Sampled queries for the recall measurement.")
    flags.DEFINE_integer("k", 10, "Neighbours in the recall measurement.")


def main(argv):
    values = common.start(argv, "embeddings", "out")
    print(
        json.dumps(
            ann_index.build_from_parts(
                values.embeddings,
                values.out,
                nlist=values.nlist,
                nprobe=values.nprobe,
                num_queries=values.queries,
                k=values.k,
            )
        )
    )


def run():
    common.run(define_flags, main)


if __name__ == "__main__":
    run()
