"""Converter throughput: listings/s of the whole conversion, per DirectRunner worker count.

  python -m item_jax.cli.bench convert --manifest runs/demo/catalog/manifest.jsonl \
      [--image_size 64] [--worker_counts 1,2]

Each count converts the manifest into a fresh temporary directory (images, tokenizer,
shards, dataset_info.json: the whole `convert_catalog` call, Beam's pipeline and worker
start-up included, TensorFlow's and Beam's imports not: they are done before timing) and
checks that every count wrote the same data (equal fingerprints).
"""

import importlib
import os
import tempfile
import time
from collections.abc import Sequence

from item_jax.data import convert


def benchmark_convert(
    manifest_path: str, *, image_size: int = 64, worker_counts: Sequence[int] = (1, 2)
) -> dict:
    for module in ("apache_beam", "tensorflow"):  # Imported before timing.
        importlib.import_module(module)
    results, fingerprints = {}, set()
    for count in worker_counts:
        with tempfile.TemporaryDirectory() as directory:
            start = time.perf_counter()
            info = convert.convert_catalog(
                manifest_path,
                os.path.join(directory, "shards"),
                image_size=image_size,
                num_workers=count,
                show_progress=False,
            )
            seconds = time.perf_counter() - start
        fingerprints.add(info["fingerprint"])
        results[str(count)] = dict(
            seconds=round(seconds, 2), listings_per_s=round(info["num_input_listings"] / seconds, 1)
        )
    return dict(
        benchmark="convert",
        runner="DirectRunner",
        manifest=manifest_path,
        image_size=image_size,
        num_input_listings=info["num_input_listings"],
        num_kept=info["num_kept"],
        cpu_count=os.cpu_count(),
        by_workers=results,
        same_output_for_every_count=len(fingerprints) == 1,
    )
