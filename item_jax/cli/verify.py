"""Checks converted shards record by record: `python -m item_jax.cli.verify --data_dir DIR`.

Reads every shard that DIR/dataset_info.json lists (TFRecord framing and CRCs; several
shards at once) and compares each with the size and record count the converter recorded.
Prints one line per broken shard, with the first bad byte offset, then a JSON summary;
exits 1 when any shard is broken. `--all` also prints the good ones. `--images` also
decodes every image as training does and lists the records whose image fails (listing id
and record index; their shards count as broken). The checks are
`item_jax/data/shard_integrity.py`.
"""

import json
import sys
import time

from absl import flags

from item_jax.cli import common
from item_jax.data import dataset_info, shard_integrity


def define_flags():
    flags.DEFINE_string("data_dir", None, "Converted shards (a dir with dataset_info.json).")
    flags.DEFINE_integer("num_workers", None, "Shards read at once (default: the CPU count).")
    flags.DEFINE_bool("all", False, "Also list the shards that are fine.")
    flags.DEFINE_bool(
        "images",
        False,
        "Also decode every image as training does, listing "
        "the records whose image fails (slower: a pass of image decoding).",
    )


def main(argv):
    values = common.start(argv, "data_dir")
    data_dir = values.data_dir
    start = time.perf_counter()
    reports = shard_integrity.verify_data_dir(
        data_dir, dataset_info.load_dataset_info(data_dir), num_workers=values.num_workers
    )
    broken = [report for report in reports if not report.ok]
    for report in reports:
        if values.all or not report.ok:
            print(report.describe())
    undecodable = []
    if values.images:
        undecodable = shard_integrity.undecodable_images(
            [report.file for report in reports if report.ok], num_workers=values.num_workers
        )
        for image in undecodable:
            print(image.describe())
    broken_files = [report.file for report in broken]
    broken_files += sorted({image.file for image in undecodable} - set(broken_files))
    print(
        json.dumps(
            {
                "data_dir": data_dir,
                "shards": len(reports),
                "records": sum(report.records for report in reports),
                "bytes": sum(report.bytes for report in reports),
                "seconds": round(time.perf_counter() - start, 2),
                "undecodable_images": len(undecodable) if values.images else None,
                "broken": len(broken_files),
                "broken_files": broken_files,
            }
        )
    )
    sys.exit(1 if broken_files else 0)


def run():
    common.run(define_flags, main)


if __name__ == "__main__":
    run()
