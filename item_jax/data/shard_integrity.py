"""Shard integrity: what the converter records about each shard, and the checks against it.

The converter records every shard's size, record count and SHA-256 in
`dataset_info.json` (`splits.SPLIT.shards`). Three checks use them:
  * `check_shard_sizes` (cheap, a stat per file): the trainer refuses to start when a
    shard's size differs from the recorded one (a truncated or partial copy), naming it;
  * `scan_shard` / `verify_data_dir` (reads every record, checking TFRecord framing and
    CRCs, several shards at once): `python -m item_jax.cli.verify --data_dir DIR` lists the
    broken shards with the first bad offset;
  * `CorruptShardError` (`named_read_error`): a record that fails to read, in training or
    in any other reader of a split (validation, evaluation), stops it naming the broken
    files and their offsets (and, in training, the last good checkpoint).
Which records each reader reads, in both modes of `config.data.on_corrupt_record`, is
`item_jax/data/readable_records.py`.
A record can also read fine and hold an image that TensorFlow cannot decode (shards not
written by this converter, bytes damaged before the CRC was computed): `undecodable_images`
decodes every image of some shards (`verify --images`, skip mode at start-up, and the
search that names the listing when training meets one).
"""

import concurrent.futures
import dataclasses
import hashlib
import os
import re
from collections.abc import Sequence
from typing import Any

from etils import epath

from item_jax import file_io
from item_jax.data.dataset_info import SPLITS
from item_jax.errors import ItemJaxError

_OFFSET_PATTERN = re.compile(r"(?:corrupted|truncated) record at (\d+)")


class CorruptShardError(ItemJaxError, RuntimeError):
    """A shard is damaged: its size, framing, CRC or content is not what was written."""


@dataclasses.dataclass(frozen=True)
class ShardReport:
    """What reading one shard found."""

    file: str
    records: int  # Records read before the end or the first error.
    bytes: int
    error: str | None = None  # TensorFlow's message, or a mismatch with dataset_info.json.
    bad_offset: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        if self.ok:
            return f"{self.file}: ok, {self.records} records, {self.bytes} bytes"
        offset = f" at byte {self.bad_offset}" if self.bad_offset is not None else ""
        return (
            f"{self.file}: BROKEN{offset} ({self.error}); {self.records} records readable before it"
        )


def describe_shard(path: str, num_records: int) -> dict[str, Any]:
    """The converter's record of a shard it has just written."""
    digest = hashlib.sha256()
    with file_io.open_file(path, "rb") as shard:
        for block in iter(lambda: shard.read(1 << 20), b""):
            digest.update(block)
    return {
        "file": os.path.basename(path),
        "bytes": file_io.getsize(path),
        "records": num_records,
        "sha256": digest.hexdigest(),
    }


def recorded_shards(dataset_info: dict, split: str) -> list[dict[str, Any]] | None:
    """The converter's per-shard records of `split`, or None for data converted before them."""
    return dataset_info["splits"][split].get("shards")


def check_shard_sizes(
    data_dir: str, dataset_info: dict, split: str, files: Sequence[str] | None = None
) -> int:
    """Raises CorruptShardError naming every shard whose size is not the recorded one.

    `files` (names or paths) limits the check to the shards this host reads; returns how
    many shards were checked (0 when the data predates per-shard records).
    """
    records = recorded_shards(dataset_info, split)
    if records is None:
        return 0
    wanted = None if files is None else {os.path.basename(str(name)) for name in files}
    problems, checked = [], 0
    for record in records:
        if wanted is not None and record["file"] not in wanted:
            continue
        path = epath.Path(data_dir) / record["file"]
        checked += 1
        if not path.exists():
            problems.append(f"{path}: missing (dataset_info.json lists {record['bytes']} bytes)")
            continue
        size = path.stat().length
        if size != record["bytes"]:
            problems.append(f"{path}: {size} bytes, dataset_info.json records {record['bytes']}")
    if problems:
        raise CorruptShardError(
            f"{len(problems)} {split} shard(s) of {data_dir} differ from what the converter "
            "wrote (a truncated or partial copy?):\n  "
            + "\n  ".join(problems)
            + "\nCopy them again or re-convert; "
            f"`python -m item_jax.cli.verify --data_dir {data_dir}` checks every record."
        )
    return checked


def scan_shard(path: str, recorded: dict[str, Any] | None = None) -> ShardReport:
    """Reads every record of one shard (framing and CRCs, as TFRecord readers check them)."""
    import tensorflow as tf  # Deferred: the size check needs no TensorFlow.

    size = epath.Path(path).stat().length
    records = 0
    try:
        for _ in tf.data.TFRecordDataset(path).as_numpy_iterator():
            records += 1
    except tf.errors.OpError as error:
        message = _readable_message(error)
        match = _OFFSET_PATTERN.search(message)
        return ShardReport(
            file=path,
            records=records,
            bytes=size,
            error=message,
            bad_offset=int(match.group(1)) if match else None,
        )
    if recorded is not None and (size, records) != (recorded["bytes"], recorded["records"]):
        return ShardReport(
            file=path,
            records=records,
            bytes=size,
            error=(
                f"{records} records / {size} bytes, dataset_info.json records "
                f"{recorded['records']} / {recorded['bytes']}"
            ),
        )
    return ShardReport(file=path, records=records, bytes=size)


def _readable_message(error: Exception) -> str:
    """TensorFlow's message without its op decorations ({{function_node ...}}, [Op:...])."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    message = re.sub(r"\{\{[^}]*\}\}", "", message.splitlines()[0])
    return re.sub(r"\s*\[Op:.*$", "", message).strip() or type(error).__name__


def scan_shards(
    paths: Sequence[str], recorded: dict[str, dict] | None = None, num_workers: int | None = None
) -> list[ShardReport]:
    """`scan_shard` over many shards at once (threads: TensorFlow reads outside the GIL)."""
    recorded = recorded or {}
    return _over_shards(
        lambda path: scan_shard(path, recorded.get(os.path.basename(path))), paths, num_workers
    )


def _over_shards(read_shard, paths: Sequence[str], num_workers: int | None) -> list:
    """`read_shard` of every path, several at once (threads: TensorFlow reads and decodes
    outside the GIL), in path order."""
    num_workers = num_workers or min(len(paths), os.cpu_count() or 1) or 1
    with concurrent.futures.ThreadPoolExecutor(max_workers=num_workers) as pool:
        return list(pool.map(read_shard, list(paths)))


def verify_data_dir(
    data_dir: str, dataset_info: dict, num_workers: int | None = None
) -> list[ShardReport]:
    """Scans every shard that dataset_info.json lists, in split order."""
    paths, recorded = [], {}
    for split in SPLITS:
        for name in dataset_info["splits"][split]["files"]:
            paths.append(os.path.join(data_dir, name))
        for record in recorded_shards(dataset_info, split) or []:
            recorded[record["file"]] = record
    missing = [path for path in paths if not epath.Path(path).exists()]
    present = [path for path in paths if path not in missing]
    reports = {report.file: report for report in scan_shards(present, recorded, num_workers)}
    for path in missing:
        reports[path] = ShardReport(file=path, records=0, bytes=0, error="missing")
    return [reports[path] for path in paths]


def readable_prefixes(
    data_dir: str,
    dataset_info: dict,
    split: str,
    files: Sequence[str],
    num_workers: int | None = None,
) -> tuple[dict[str, int], dict[str, int]]:
    """For `on_corrupt_record="skip"`: scans `files`; returns (path -> records to read,
    file name -> records left out) for the broken ones.

    A TFRecord shard cannot be re-synchronised safely after a bad record (its length field
    may be the damaged part), so a broken shard is read up to its first bad record and the
    rest of it is left out. Deterministic: a resumed run reads the same records.
    """
    recorded = {record["file"]: record for record in recorded_shards(dataset_info, split) or []}
    if not recorded:
        raise CorruptShardError(
            f"config.data.on_corrupt_record='skip' needs the per-shard record counts in "
            f"{data_dir}/dataset_info.json, which this conversion predates; re-convert."
        )
    limits, left_out = {}, {}
    for report in scan_shards(list(files), recorded, num_workers):
        if report.ok:
            continue
        name = os.path.basename(report.file)
        limits[report.file] = report.records
        left_out[name] = recorded[name]["records"] - report.records
    return limits, left_out


@dataclasses.dataclass(frozen=True)
class UndecodableImage:
    """A record whose image the training decoder rejects."""

    file: str
    record: int  # Index of the record in its shard (0-based).
    id: str  # The listing's id.
    error: str

    def describe(self) -> str:
        return (
            f"{self.file}: record {self.record} (listing {self.id!r}): "
            f"image undecodable ({self.error})"
        )


def scan_images(path: str, limit: int | None = None) -> list[UndecodableImage]:
    """Decodes the image of every record of one shard (the first `limit`) as training does."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    from item_jax.data import preprocess  # pylint: disable=g-import-not-at-top

    records = tf.data.TFRecordDataset(path)
    if limit is not None:
        records = records.take(limit)
    bad = []
    for index, serialized in enumerate(records.as_numpy_iterator()):
        example = tf.train.Example.FromString(serialized)
        features = example.features.feature
        image = features["image"].bytes_list.value[0] if "image" in features else b""
        try:
            preprocess.decode_image(tf.constant(image), 8)
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
            listing_id = (
                features["id"].bytes_list.value[0].decode("utf-8", "replace")
                if "id" in features
                else "?"
            )
            bad.append(
                UndecodableImage(
                    file=path, record=index, id=listing_id, error=_readable_message(error)
                )
            )
    return bad


def undecodable_images(
    paths: Sequence[str], limits: dict[str, int] | None = None, num_workers: int | None = None
) -> list[UndecodableImage]:
    """`scan_images` over many shards at once (threads: TensorFlow decodes outside the GIL)."""
    limits = limits or {}
    found = _over_shards(lambda path: scan_images(path, limits.get(path)), paths, num_workers)
    return [image for per_shard in found for image in per_shard]


def is_image_decode_error(error: BaseException) -> bool:
    """Whether `error` looks like the input pipeline failing to decode an image."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return (
        isinstance(error, (tf.errors.InvalidArgumentError, tf.errors.UnknownError))
        and re.search(r"jpeg|png|gif|bmp|webp|image", str(error), re.IGNORECASE) is not None
    )


def undecodable_image_error(
    error: Exception,
    data_dir: str,
    split: str,
    files: Sequence[str],
    limits: dict[str, int] | None,
    resume: str = "",
) -> CorruptShardError:
    """The error a reader stops with when an image fails to decode (names the listing)."""
    found = undecodable_images(files, limits)
    where = (
        "\n  ".join(image.describe() for image in found[:20])
        if found
        else "no image fails to decode on a re-read (a transient error?)"
    )
    return CorruptShardError(
        f"An image of the {split} split failed to decode ({_readable_message(error)}).\nIn "
        f"{data_dir}:\n  {where}\nRe-convert the catalog, or set "
        f"config.data.on_corrupt_record='skip' to leave such listings out (counted); then "
        f"rerun{resume}. "
        f"`python -m item_jax.cli.verify --data_dir {data_dir} --images` lists them all."
    )


def resume_hint(last_checkpoint: int | None) -> str:
    """What a training run's rerun resumes from, as the read errors end their advice."""
    return (
        f": the last good checkpoint is step {last_checkpoint}; a rerun resumes from it"
        if last_checkpoint is not None
        else ": no checkpoint was written yet"
    )


def is_record_read_error(error: BaseException) -> bool:
    """Whether `error` is tf.data failing to read a record (bad framing, CRC, truncation)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return isinstance(error, tf.errors.DataLossError)


def corrupt_record_error(
    error: Exception, data_dir: str, split: str, files: Sequence[str], resume: str = ""
) -> CorruptShardError:
    """The error a reader stops with when a record fails to read.

    tf.data's message has an offset but not the file (shards are read interleaved), so the
    split's shards are scanned to name the broken ones.
    """
    broken = [report for report in scan_shards(list(files)) if not report.ok]
    where = (
        "\n  ".join(report.describe() for report in broken)
        if broken
        else "no shard fails a re-read now (a transient read error?)"
    )
    return CorruptShardError(
        f"A record of the {split} split failed to read ({_readable_message(error)}).\nBroken "
        f"shard(s) of {data_dir}:\n  {where}\nReplace them (copy again, or re-convert), or "
        f"set config.data.on_corrupt_record='skip' to read each only up to its first bad "
        f"record (counted); then rerun{resume}. "
        f"`python -m item_jax.cli.verify --data_dir {data_dir}` checks every shard."
    )


def named_read_error(
    error: BaseException,
    data_dir: str,
    split: str,
    files: Sequence[str],
    limits: dict[str, int] | None = None,
    resume: str = "",
) -> CorruptShardError | None:
    """What any reader of a split raises for `error` (a record that fails to read, an image
    that fails to decode), naming the shard; None when `error` is neither.

    `resume` (training: `resume_hint(last checkpoint)`) ends the advice to rerun.
    """
    if is_record_read_error(error):
        return corrupt_record_error(error, data_dir, split, files, resume)
    if is_image_decode_error(error):
        return undecodable_image_error(error, data_dir, split, files, limits, resume)
    return None
