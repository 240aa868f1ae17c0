"""The readable records of a split: which records every reader of that split reads.

`config.data.on_corrupt_record` picks the mode, and every reader of a split takes its
records from `of_split`: the trainer, the periodic and end-of-run validation, evaluation
(the test split, the train titles that fit the TF-IDF reference, the probe's and kNN's
train embeddings) and the ablation. So they read the same records and count the same
ones left out.
  * "stop" (the default): every record. Shard sizes are checked against
    dataset_info.json (a stat per file); a record that later fails to read stops the
    reader naming the shard and the offset (`shard_integrity.named_read_error`).
  * "skip": every shard of the split is read once (framing and CRCs) and its images
    decoded once; a broken shard is read only up to its first bad record (a TFRecord
    file cannot be re-synchronised safely after one) and a listing whose image does not
    decode is left out, each logged and counted.
The scan is done once per process for a given split and set of shard files (cached by
path, size and modification time), so the end-of-run validation does not read the
train split again after the trainer's start-up scan.
"""

import dataclasses
import os
import threading
import time
from collections.abc import Mapping

from absl import logging
from etils import epath

from item_jax.data import dataset_info, shard_integrity

MODES = ("stop", "skip")

_cache: dict[tuple, "ReadableRecords"] = {}
_cache_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class ReadableRecords:
    """Which records of a split's shards are read (shard paths are as listed in `files`)."""

    data_dir: str
    split: str
    mode: str
    files: tuple[str, ...]
    limits: Mapping[str, int]  # path -> records read (broken shards only).
    corrupt_left_out: Mapping[str, int]  # file name -> records after the first bad one.
    dropped: Mapping[str, tuple[int, ...]]  # path -> records whose image does not decode.

    @property
    def num_corrupt_left_out(self) -> int:
        return sum(self.corrupt_left_out.values())

    @property
    def num_images_left_out(self) -> int:
        return sum(len(indices) for indices in self.dropped.values())

    @property
    def num_left_out(self) -> int:
        return self.num_corrupt_left_out + self.num_images_left_out

    def counts(self) -> dict[str, float]:
        """The left-out counts as metrics: totals, then one per shard file."""
        images = {os.path.basename(path): len(indices) for path, indices in self.dropped.items()}
        return {
            "corrupt_records_left_out": float(self.num_corrupt_left_out),
            **{
                f"corrupt_records_left_out.{name}": float(count)
                for name, count in self.corrupt_left_out.items()
            },
            "undecodable_images_left_out": float(self.num_images_left_out),
            **{
                f"undecodable_images_left_out.{name}": float(count)
                for name, count in images.items()
            },
        }


def mode_of(config) -> str:
    """`config.data.on_corrupt_record` ("stop" for configs that predate it)."""
    mode = config.data.on_corrupt_record
    if mode not in MODES:
        raise ValueError(f"config.data.on_corrupt_record: {mode!r} is not one of {MODES}")
    return mode


def of_split(data_dir: str, split: str, mode: str = "stop") -> ReadableRecords:
    """The readable records of `split` in `data_dir` under `mode` (computed once per process
    for the same shard files)."""
    from item_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top

    if mode not in MODES:
        raise ValueError(f"on_corrupt_record: {mode!r} is not one of {MODES}")
    files = tuple(input_pipeline.list_split_files(data_dir, split))
    key = (mode, split, tuple(_identity(path) for path in files))
    with _cache_lock:  # Also keeps two threads from scanning the same split at once.
        if key not in _cache:
            _cache[key] = _find(data_dir, split, mode, files)
        return _cache[key]


def _identity(path: str) -> tuple:
    stat = epath.Path(path).stat()
    return path, stat.length, stat.mtime


def _find(data_dir: str, split: str, mode: str, files: tuple[str, ...]) -> ReadableRecords:
    info = dataset_info.load_dataset_info(data_dir)
    if mode == "stop":
        if not shard_integrity.check_shard_sizes(data_dir, info, split, files):
            logging.warning(
                "%s predates per-shard sizes in dataset_info.json: %s shard sizes are "
                "not checked (re-convert to get them).",
                data_dir,
                split,
            )
        return ReadableRecords(data_dir, split, mode, files, {}, {}, {})
    start = time.time()
    limits, left_out = shard_integrity.readable_prefixes(data_dir, info, split, files)
    for path, readable in limits.items():
        logging.warning(
            "Corrupt shard %s: its first %d records are read, %d left out "
            "(config.data.on_corrupt_record='skip').",
            path,
            readable,
            left_out[os.path.basename(path)],
        )
    dropped: dict[str, list[int]] = {}
    undecodable = shard_integrity.undecodable_images(list(files), limits)
    for image in undecodable:
        dropped.setdefault(image.file, []).append(image.record)
        logging.warning("Left out (config.data.on_corrupt_record='skip'): %s", image.describe())
    logging.info(
        "Shard check (skip mode, %s split): %d shards read, %d broken, %d records left "
        "out; %d undecodable images left out (%.1fs).",
        split,
        len(files),
        len(left_out),
        sum(left_out.values()),
        len(undecodable),
        time.time() - start,
    )
    return ReadableRecords(
        data_dir,
        split,
        mode,
        files,
        limits,
        left_out,
        {path: tuple(indices) for path, indices in dropped.items()},
    )
