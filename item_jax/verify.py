"""Checks converted shards record by record: `python -m item_jax.verify --data_dir DIR`.

Reads every shard that DIR/dataset_info.json lists (TFRecord framing and CRCs; several
shards at once) and compares each with the size and record count the converter recorded.
Prints one line per broken shard, with the first bad byte offset, then a JSON summary;
exits 1 when any shard is broken. `--all` also prints the good ones. The checks are
`item_jax/data/shard_integrity.py`.
"""

import json
import sys
import time

from absl import app, flags

from item_jax import logging_setup
from item_jax.data import convert, shard_integrity


def main(argv):
  logging_setup.quiet_library_logs()
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS.data_dir:
    raise app.UsageError("--data_dir is required")
  data_dir = flags.FLAGS.data_dir
  start = time.perf_counter()
  reports = shard_integrity.verify_data_dir(data_dir, convert.load_dataset_info(data_dir),
                                            num_workers=flags.FLAGS.num_workers)
  broken = [report for report in reports if not report.ok]
  for report in reports:
    if flags.FLAGS.all or not report.ok:
      print(report.describe())
  print(json.dumps({
      "data_dir": data_dir, "shards": len(reports), "broken": len(broken),
      "records": sum(report.records for report in reports),
      "bytes": sum(report.bytes for report in reports),
      "seconds": round(time.perf_counter() - start, 2),
      "broken_files": [report.file for report in broken]}))
  sys.exit(1 if broken else 0)


def run():
  """Command-line entry point (flags are defined here, so importing the module is free)."""
  flags.DEFINE_string("data_dir", None, "Converted shards (a dir with dataset_info.json).")
  flags.DEFINE_integer("num_workers", None, "Shards read at once (default: the CPU count).")
  flags.DEFINE_bool("all", False, "Also list the shards that are fine.")
  app.run(main)


if __name__ == "__main__":
  run()
