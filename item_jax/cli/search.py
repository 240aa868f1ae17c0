"""Finds the nearest products of a new listing in an embedded catalog.

  python -m item_jax.cli.embed --export runs/demo/export --manifest M.jsonl --out runs/parts \\
      --format parquet
  python -m item_jax.cli.search --export runs/demo/export --embeddings runs/parts \\
      --title "red ceramic mug 12 oz" [--image photo.jpg] [--k 10] [--json]
  python -m item_jax.cli.search --export E --embeddings runs/ann --image photo.jpg

--embeddings is either the Parquet parts (exact search) or a `build_ann_index` folder (the
faiss index; --nprobe overrides its cells searched). The listing is a title, a photo, or
both. Prints rank, score (cosine), id, group, category and title of the nearest listings,
or with --json one JSON line. See `item_jax/search.py`.
"""

import json
import sys

from absl import flags

from item_jax import search
from item_jax.cli import common


def define_flags():
    flags.DEFINE_string("export", None, "Export directory (python -m item_jax.cli.export).")
    flags.DEFINE_string(
        "embeddings",
        None,
        "Parquet parts (embed --format parquet) or a faiss index folder (build_ann_index).",
    )
    flags.DEFINE_string("title", None, "The new listing's title.")
    flags.DEFINE_string("image", None, "The new listing's photo (a file).")
    flags.DEFINE_integer("k", 10, "Nearest listings to print.")
    flags.DEFINE_integer(
        "nprobe", None, "faiss index only: cells searched (default: the index's own)."
    )
    flags.DEFINE_bool("json", False, "Print one JSON line instead of a table.")


def main(argv):
    values = common.start(argv, "export", "embeddings")
    try:
        result = search.search(
            values.export,
            values.embeddings,
            title=values.title,
            image_path=values.image,
            k=values.k,
            nprobe=values.nprobe,
        )
    except (search.SearchError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(result) if values.json else search.format_table(result))


def run():
    common.run(define_flags, main)


if __name__ == "__main__":
    run()
