"""tf.data input pipeline: TFRecord shards -> stream batches -> global `jax.Array` batches.

Training splits the split's files (or examples) into `config.data.num_streams` disjoint
streams (`make_host_dataset` reads one). Global batch `b` is batch `b` of stream 0, then of
stream 1, and so on, so the data order depends on (seed, num_streams) and not on the
hardware: each process builds only the streams whose rows of the global batch its devices
hold, and `make_global_iterator` assembles them into the global arrays the jitted step
takes. One process with two streams sees the same global batches as two processes.
Evaluation reads a split once, unshuffled, with its last batch padded
(`iterate_eval_batches`). The shard schema and the batch dict are fixed in docs/design.md.
Every reader takes `readable` (`item_jax/data/readable_records.py`: the records of the
split that `config.data.on_corrupt_record` lets it read; None reads every record), and
names the shard when a record fails to read (`shard_integrity.named_read_error`).

Order and resume: a stream's element sequence is a deterministic function of
(seed, stream index, stream count). Epoch `e` shuffles the file order from (seed, e) and the
records from (seed, stream index, e), so `start_batch=k` can jump straight to the epoch that
holds batch `k` and skip the rest on serialized records, before anything is decoded.
With `config.data.seller_buckets` each batch is one seller bucket's next records, so a
resume replays the stream from its start and skips `k` batches of serialized records.
"""

import os
import queue
import threading
from collections.abc import Iterator

import jax
import numpy as np
import tensorflow as tf
from absl import logging

from item_jax.data import preprocess, shard_integrity

_FEATURE_SPEC = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "title_tokens": tf.io.RaggedFeature(tf.int64),
    "group_index": tf.io.FixedLenFeature([], tf.int64),
    "category_index": tf.io.FixedLenFeature([], tf.int64),
    # Shards written before the field have no sellers: every listing is then in one.
    "seller": tf.io.FixedLenFeature([], tf.string, default_value=""),
}
_ID_FEATURE_SPEC = {"id": tf.io.FixedLenFeature([], tf.string)}
_TITLE_FEATURE_SPEC = {"title": tf.io.FixedLenFeature([], tf.string)}

_TFRECORD_LENGTH_BYTES = 8
_TFRECORD_CRC_BYTES = 4
_MAX_CYCLE_LENGTH = 16
# Decoded examples the parallel decode may hold per core: one large host batch is spread over
# all cores inside its map call; small batches are decoded several at once.
_DECODED_EXAMPLES_IN_FLIGHT_PER_CORE = 64
_NO_END = 2**62


def seller_indices(sellers: tf.Tensor) -> tf.Tensor:
    """Sellers (strings) -> int32 ids, equal for equal sellers: a fingerprint, so that shards
    need no seller vocabulary (two sellers share an id with odds of about 2^-31)."""
    return tf.cast(tf.strings.to_hash_bucket_fast(sellers, 2**31 - 1), tf.int32)


def list_split_files(data_dir: str, split: str) -> list[str]:
    """Returns the split's shard paths `DIR/{split}-k-of-n.tfrecord`, sorted."""
    pattern = os.path.join(data_dir, f"{split}-*-of-*.tfrecord")
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(
            f"No '{split}' shards in data directory '{data_dir}' (looked for {pattern}). "
            "Write them with `python -m item_jax.cli.convert`."
        )
    return files


def make_host_dataset(
    data_dir: str,
    split: str,
    *,
    image_size: int,
    max_text_len: int,
    host_batch_size: int,
    process_index: int,
    process_count: int,
    shuffle_buffer: int,
    seed: int,
    repeat: bool = True,
    start_batch: int = 0,
    drop_remainder: bool = True,
    readable=None,
    seller_buckets: int = 0,
) -> tf.data.Dataset:
    """Returns one part (a host's, or a training stream's) of the split as batch dicts.

    In training, `process_index` / `process_count` name a stream among
    `config.data.num_streams` (see `make_global_iterator`); in benchmarks and evaluation, a
    host among the hosts. Parts split the work by files when there are at least
    `process_count` files, otherwise by examples; either way the parts hold disjoint examples
    that together cover the split.
    The shuffle buffer holds serialized records (not decoded images), so host memory stays
    bounded by `shuffle_buffer` encoded listings plus a few batches in flight.

    Exact resume: the sequence of elements is a deterministic function of
    (seed, process_index, process_count) and the files, and `start_batch=k` yields batch `k`
    of that sequence first, equal to what a fresh dataset yields after `k` batches. It counts
    the host's records (TFRecord headers only), starts at the epoch that holds batch `k` and
    skips the remainder on serialized records, before parsing or decoding.

    Args:
      data_dir: directory of the converter's shards.
      split: "train", "validation" or "test".
      image_size: S of the `[S, S, 3]` images.
      max_text_len: L text slots.
      host_batch_size: examples per batch of this part.
      process_index: this part's index (host or stream) among `process_count` parts.
      process_count: number of parts the split is divided into.
      shuffle_buffer: shuffle buffer in examples; 0 or 1 keeps file order.
      seed: seeds the file and record shuffles.
      repeat: cycle through epochs without end (each with its own shuffle).
      start_batch: index of the first batch to yield.
      drop_remainder: drop a final partial batch (only reachable with `repeat=False`).
      readable: the split's `readable_records.ReadableRecords` (skip mode: the readable
        prefix of each damaged shard, less the listings whose image does not decode); None
        reads every record.
      seller_buckets: > 0: every batch is drawn from one of this many buckets of sellers
        (`config.data.seller_buckets`; needs `repeat` and `drop_remainder`); 0: batches
        in shuffled order, whatever their sellers.

    Returns:
      Dataset of dicts with the keys of `item_jax/batch.py`: `image` float32 [B, S, S, 3],
      the others int32 [B] or [B, L].
    """
    _check_host(process_index, process_count)
    if host_batch_size < 1:
        raise ValueError(f"host_batch_size must be positive, got {host_batch_size}")
    if start_batch < 0:
        raise ValueError(f"start_batch must be >= 0, got {start_batch}")
    if seller_buckets < 0:
        raise ValueError(f"seller_buckets must be >= 0, got {seller_buckets}")
    if seller_buckets and not (repeat and drop_remainder):
        raise ValueError(
            "seller_buckets batches a repeating stream: needs repeat and drop_remainder"
        )
    files = list_split_files(data_dir, split)
    host_files, shard_examples = _host_files(files, process_index, process_count)
    record_limits, dropped_records = _host_readable(readable, host_files)
    # Batches by seller bucket are not runs of consecutive records, so their resume replays
    # the stream from its start and skips whole batches (serialized, before decoding).
    first_epoch, skip_in_epoch = _resume_position(
        host_files,
        shard_examples,
        process_index,
        process_count,
        0 if seller_buckets else start_batch * host_batch_size,
        repeat,
        record_limits,
        dropped_records,
    )
    epochs = tf.data.Dataset.range(first_epoch, _NO_END if repeat else first_epoch + 1)
    shuffle = shuffle_buffer > 1
    open_file = _file_opener(record_limits, dropped_records)
    records = epochs.flat_map(
        lambda epoch: _epoch_records(
            host_files,
            epoch,
            shuffle=shuffle,
            shuffle_buffer=shuffle_buffer,
            seed=seed,
            shard_examples=shard_examples,
            process_index=process_index,
            process_count=process_count,
            open_file=open_file,
        )
    )
    records = records.skip(skip_in_epoch)
    if seller_buckets:
        serialized = _batches_by_seller_bucket(records, host_batch_size, seller_buckets)
        serialized = serialized.skip(start_batch)
    else:
        serialized = records.batch(host_batch_size, drop_remainder=drop_remainder)
    batches = _parse_batches(serialized, host_batch_size, image_size, max_text_len, with_ids=False)
    return batches.with_options(_pipeline_options())


def _batches_by_seller_bucket(
    records: tf.data.Dataset, batch_size: int, num_buckets: int
) -> tf.data.Dataset:
    """Serialized records -> batches whose records share a seller bucket, in stream order.

    A batch is emitted when a bucket has collected `batch_size` records, so the stream
    holds fewer than `num_buckets * batch_size` records waiting. Sellers are hashed into
    buckets: a seller's listings always share one, and with fewer sellers than buckets most
    sellers have one of their own (a catalog without sellers is one seller: then every batch
    is the plain run of `batch_size` records).
    """

    # Only the seller is read here, on serialized records, so that a resume can skip whole
    # batches before anything is decoded; `_parse_batches` reads every field afterwards.
    def bucket(record: tf.Tensor) -> tf.Tensor:
        seller = tf.io.parse_single_example(record, {"seller": _FEATURE_SPEC["seller"]})
        return tf.strings.to_hash_bucket_fast(seller["seller"], num_buckets)

    return records.group_by_window(
        key_func=bucket,
        reduce_func=lambda _, window: window.batch(batch_size, drop_remainder=True),
        window_size=batch_size,
    )


def iterate_eval_batches(
    data_dir: str,
    split: str,
    *,
    image_size: int,
    max_text_len: int,
    batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    with_titles: bool = False,
    readable=None,
) -> Iterator[tuple[dict[str, np.ndarray], list[str]]]:
    """Yields (batch of numpy arrays, ids of its valid rows) over one unshuffled pass.

    Every example of this host's part of the split appears exactly once; the last batch is
    padded to `batch_size` with rows whose `valid` is 0. Hosts may yield different numbers
    of batches when the split does not divide evenly. `with_titles` adds the cleaned title
    text as `batch["title"]` (bytes, `b""` on padding rows) for the classical baselines.
    """
    _check_host(process_index, process_count)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    files = list_split_files(data_dir, split)
    host_files, shard_examples = _host_files(files, process_index, process_count)
    record_limits, dropped_records = _host_readable(readable, host_files)
    records = _epoch_records(
        host_files,
        tf.constant(0, tf.int64),
        shuffle=False,
        shuffle_buffer=0,
        seed=0,
        shard_examples=shard_examples,
        process_index=process_index,
        process_count=process_count,
        open_file=_file_opener(record_limits, dropped_records),
    )
    batches = _parse_batches(
        records.batch(batch_size),
        batch_size,
        image_size,
        max_text_len,
        with_ids=True,
        with_titles=with_titles,
    )
    for batch in _named_read_errors(
        batches.with_options(_pipeline_options()).as_numpy_iterator(),
        data_dir,
        split,
        host_files,
        record_limits,
    ):
        ids = [listing_id.decode("utf-8") for listing_id in batch.pop("id")]
        yield _pad_batch(batch, batch_size), ids


def read_titles(
    data_dir: str, split: str, *, max_examples: int | None = None, readable=None
) -> list[str]:
    """The split's cleaned titles in file order (empty strings included), nothing decoded.

    `readable`: see `make_host_dataset`; its left-out listings are left out here too.
    """
    files = list_split_files(data_dir, split)
    record_limits, dropped_records = _host_readable(readable, files)
    records = tf.data.Dataset.from_tensor_slices(files).flat_map(
        _file_opener(record_limits, dropped_records)
    )
    if max_examples:
        records = records.take(max_examples)
    titles = records.batch(1024).map(
        lambda serialized: tf.io.parse_example(serialized, _TITLE_FEATURE_SPEC)["title"]
    )
    return [
        title.decode("utf-8")
        for batch in _named_read_errors(
            titles.as_numpy_iterator(), data_dir, split, files, record_limits
        )
        for title in batch
    ]


def _host_readable(readable, host_files: list[str]) -> tuple[dict[str, int], dict[str, list[int]]]:
    """(record limits, dropped record indices) of `readable` for the shards this part reads."""
    if readable is None:
        return {}, {}
    limits = {path: limit for path, limit in readable.limits.items() if path in host_files}
    dropped = {
        path: sorted(set(indices))
        for path, indices in readable.dropped.items()
        if path in host_files and indices
    }
    return limits, dropped


def _named_read_errors(
    iterator, data_dir: str, split: str, files: list[str], record_limits: dict[str, int]
):
    """`iterator`, with a record that fails to read (or an image that fails to decode)
    raised as a `CorruptShardError` naming the shard."""
    try:
        yield from iterator
    except tf.errors.OpError as error:
        named = shard_integrity.named_read_error(error, data_dir, split, files, record_limits)
        if named is None:
            raise
        raise named from error


def make_global_iterator(
    config,
    data_dir: str,
    mesh: jax.sharding.Mesh,
    batch_sharding,
    *,
    split: str = "train",
    start_step: int = 0,
    num_streams: int | None = None,
    readable=None,
) -> "_PrefetchIterator":
    """Yields training batches as global `jax.Array`s, `config.data.prefetch_batches` ahead.

    The split is read as `num_streams` streams of `global_batch_size // num_streams` examples
    per step; global batch `b` is the streams' batches `b` in stream order. This process builds
    only the streams that fill the rows of the global batch its devices hold. Step
    `start_step` of a resumed run receives the same batch as step `start_step` of an
    uninterrupted run with the same seed and stream count, whatever the process count.

    Args:
      config: uses model.image_size, model.max_text_len, global_batch_size,
        data.shuffle_buffer (per stream), data.prefetch_batches, data.num_streams,
        data.seller_buckets and seed.
      data_dir: directory of the converter's shards.
      mesh: the device mesh the batch is laid out on.
      batch_sharding: a `jax.sharding.Sharding` for every key, or a dict of them by key.
      split: the split to read.
      start_step: the first step's batch index.
      num_streams: overrides `resolve_num_streams(config)` (a resumed run keeps the stream
        count of its checkpoint).
      readable: see `make_host_dataset`.
    """
    global_batch_size = config.global_batch_size
    num_streams = resolve_num_streams(config) if num_streams is None else num_streams
    _check_batch_divides_mesh(global_batch_size, mesh, batch_sharding)
    streams = process_streams(global_batch_size, num_streams, batch_sharding)
    stream_batch_size = global_batch_size // num_streams
    datasets = [
        make_host_dataset(
            data_dir,
            split,
            image_size=config.model.image_size,
            max_text_len=config.model.max_text_len,
            host_batch_size=stream_batch_size,
            process_index=stream,
            process_count=num_streams,
            shuffle_buffer=config.data.shuffle_buffer,
            seed=config.seed,
            repeat=True,
            start_batch=start_step,
            readable=readable,
            seller_buckets=config.data.seller_buckets,
        )
        for stream in streams
    ]
    to_global = lambda batch: _to_global_arrays(batch, batch_sharding, global_batch_size)
    host_batches = _concatenate_streams(datasets).as_numpy_iterator()
    return _PrefetchIterator(host_batches, to_global, config.data.prefetch_batches)


def resolve_num_streams(config) -> int:
    """`config.data.num_streams`, where 0 means one stream per process."""
    return config.data.num_streams or jax.process_count()


def process_streams(global_batch_size: int, num_streams: int, batch_sharding) -> range:
    """The streams whose rows of the global batch this process's devices hold.

    Stream `s` fills rows `[s * n, (s + 1) * n)`, `n = global_batch_size // num_streams`. The
    process's rows must be one contiguous run that starts and ends on stream boundaries.
    """
    if num_streams < 1 or global_batch_size % num_streams:
        raise ValueError(
            f"config.data.num_streams: {num_streams} streams do not divide "
            f"global_batch_size {global_batch_size}"
        )
    rows = _process_rows(global_batch_size, batch_sharding)
    stream_batch_size = global_batch_size // num_streams
    if rows.start % stream_batch_size or len(rows) % stream_batch_size:
        raise ValueError(
            f"config.data.num_streams: process {jax.process_index()} holds rows "
            f"[{rows.start}, {rows.stop}) of the global batch of {global_batch_size}, which do not "
            f"fall on the boundaries of {num_streams} streams of {stream_batch_size} rows; use a "
            f"multiple of the {jax.process_count()} processes"
        )
    return range(rows.start // stream_batch_size, rows.stop // stream_batch_size)


def _process_rows(global_batch_size: int, batch_sharding) -> range:
    """The rows of the global batch held by this process's devices, as one range."""
    shardings = (
        list(batch_sharding.values()) if isinstance(batch_sharding, dict) else [batch_sharding]
    )
    row_sets = []
    for sharding in shardings:
        indices = sharding.addressable_devices_indices_map((global_batch_size,)).values()
        row_sets.append(
            sorted(
                {row for index in indices for row in range(*index[0].indices(global_batch_size))}
            )
        )
    rows = row_sets[0]
    if any(other != rows for other in row_sets[1:]):
        raise ValueError(
            f"Every key of the batch must be split over the same devices; got shardings {shardings}"
        )
    if rows != list(range(rows[0], rows[-1] + 1)):
        raise ValueError(
            f"Process {jax.process_index()} holds rows of the global batch that are "
            f"not contiguous ({rows[:8]}...); the batch sharding must give each "
            "process one contiguous block of rows"
        )
    return range(rows[0], rows[-1] + 1)


def _concatenate_streams(datasets: list[tf.data.Dataset]) -> tf.data.Dataset:
    """Batch `b` of every stream, concatenated in stream order into one batch."""
    if len(datasets) == 1:
        return datasets[0]
    zipped = tf.data.Dataset.zip(tuple(datasets))
    return (
        zipped.map(
            lambda *batches: {
                key: tf.concat([batch[key] for batch in batches], axis=0) for key in batches[0]
            },
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        .prefetch(tf.data.AUTOTUNE)
        .with_options(_pipeline_options())
    )


def _check_host(process_index: int, process_count: int) -> None:
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"process_index {process_index} is not in [0, process_count {process_count})"
        )


def _host_files(files: list[str], process_index: int, process_count: int) -> tuple[list[str], bool]:
    """Returns (files this host reads, whether it must further take every n-th example)."""
    if len(files) >= process_count:
        return files[process_index::process_count], False
    return files, True


def _file_opener(record_limits: dict[str, int], dropped_records: dict[str, list[int]]):
    """path tensor -> its records: whole, or the first `record_limits[path]`, less the
    records `dropped_records[path]` names."""
    if not record_limits and not dropped_records:
        return tf.data.TFRecordDataset
    limits = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(record_limits) or [""]),
            tf.constant(list(record_limits.values()) or [-1], tf.int64),
        ),
        default_value=-1,
    )  # take(-1): every record.
    dropped_keys = [
        f"{path}#{index}" for path, indices in dropped_records.items() for index in indices
    ]
    dropped = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(dropped_keys or [""]), tf.ones([max(len(dropped_keys), 1)], tf.int64)
        ),
        default_value=0,
    )

    def open_file(path):
        records = tf.data.TFRecordDataset(path).take(limits.lookup(path))
        if not dropped_keys:
            return records
        return (
            records.enumerate()
            .filter(
                lambda index, _: (
                    dropped.lookup(tf.strings.join([path, "#", tf.strings.as_string(index)])) == 0
                )
            )
            .map(lambda _, record: record)
        )

    return open_file


def _epoch_records(
    files: list[str],
    epoch: tf.Tensor,
    *,
    shuffle: bool,
    shuffle_buffer: int,
    seed: int,
    shard_examples: bool,
    process_index: int,
    process_count: int,
    open_file=tf.data.TFRecordDataset,
) -> tf.data.Dataset:
    """Serialized records of one epoch of this host, in an order fixed by (seed, epoch)."""
    paths = tf.constant(files)
    if shuffle:
        # Hosts that shard examples must agree on the file order, so no process_index here.
        paths = tf.random.experimental.stateless_shuffle(
            paths, seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )
    records = tf.data.Dataset.from_tensor_slices(paths).interleave(
        open_file,
        cycle_length=min(len(files), _MAX_CYCLE_LENGTH),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if shard_examples:
        records = records.shard(process_count, process_index)
    if shuffle:
        record_seed = tf.random.experimental.stateless_fold_in(
            tf.constant([seed, process_index], tf.int64), epoch
        )[0]
        records = records.shuffle(shuffle_buffer, seed=record_seed, reshuffle_each_iteration=False)
    return records


def _parse_batches(
    serialized_batches: tf.data.Dataset,
    batch_size: int,
    image_size: int,
    max_text_len: int,
    *,
    with_ids: bool,
    with_titles: bool = False,
) -> tf.data.Dataset:
    """Batches of serialized records ([<= batch_size] strings) -> decoded batch dicts."""
    feature_spec = dict(
        _FEATURE_SPEC,
        **(_ID_FEATURE_SPEC if with_ids else {}),
        **(_TITLE_FEATURE_SPEC if with_titles else {}),
    )

    def parse_and_preprocess(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        features = tf.io.parse_example(serialized, feature_spec)
        images, has_image = tf.map_fn(
            lambda image_bytes: preprocess.decode_image(image_bytes, image_size),
            features["image"],
            fn_output_signature=(
                tf.TensorSpec([image_size, image_size, 3], tf.float32),
                tf.TensorSpec([], tf.int32),
            ),
            parallel_iterations=_cpu_count(),
        )
        text_tokens, text_mask, has_title = preprocess.pack_title_tokens(
            features["title_tokens"], max_text_len
        )
        batch = {
            "image": images,
            "has_image": has_image,
            "text_tokens": text_tokens,
            "text_mask": text_mask,
            "has_title": has_title,
            "group_index": tf.cast(features["group_index"], tf.int32),
            "category_index": tf.cast(features["category_index"], tf.int32),
            "seller_index": seller_indices(features["seller"]),
            "valid": tf.ones_like(has_image),
        }
        if with_ids:
            batch["id"] = features["id"]
        if with_titles:
            batch["title"] = features["title"]
        return batch

    batches = serialized_batches.map(
        parse_and_preprocess,
        num_parallel_calls=_batches_decoded_at_once(batch_size),
        deterministic=True,
    )
    return batches.prefetch(tf.data.AUTOTUNE)


def _batches_decoded_at_once(batch_size: int) -> int:
    """Enough batches in flight to keep every core busy, but at least two to overlap them."""
    examples_wanted = _cpu_count() * _DECODED_EXAMPLES_IN_FLIGHT_PER_CORE
    return max(2, -(-examples_wanted // batch_size))


def _cpu_count() -> int:
    return os.cpu_count() or 1


def _pipeline_options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    options.threading.private_threadpool_size = max(2, _cpu_count())
    return options


def _resume_position(
    host_files: list[str],
    shard_examples: bool,
    process_index: int,
    process_count: int,
    examples_to_skip: int,
    repeat: bool,
    record_limits: dict[str, int],
    dropped_records: dict[str, list[int]] | None = None,
) -> tuple[int, int]:
    """Returns (first epoch, records to skip inside it) for skipping `examples_to_skip`."""
    if examples_to_skip == 0 or not repeat:
        return 0, examples_to_skip
    examples_per_epoch = (
        sum(record_limits[path] for path in host_files if path in record_limits)
        + _count_records([path for path in host_files if path not in record_limits])
        - sum(
            len([index for index in indices if index < record_limits.get(path, _NO_END)])
            for path, indices in (dropped_records or {}).items()
            if path in host_files
        )
    )
    if shard_examples:
        examples_per_epoch = len(range(process_index, examples_per_epoch, process_count))
    if examples_per_epoch == 0:
        raise ValueError(
            f"Cannot resume: host {process_index} of {process_count} has no "
            f"examples in {host_files}"
        )
    return divmod(examples_to_skip, examples_per_epoch)


def _count_records(files: list[str]) -> int:
    """Counts TFRecord records by hopping over their length headers, reading no payloads."""
    total = 0
    for path in files:
        with tf.io.gfile.GFile(path, "rb") as stream:
            while True:
                header = stream.read(_TFRECORD_LENGTH_BYTES)
                if not header:
                    break
                if len(header) != _TFRECORD_LENGTH_BYTES:
                    raise ValueError(f"Truncated TFRecord file {path} after {total} records")
                payload_length = int.from_bytes(header, "little")
                stream.seek(
                    stream.tell() + _TFRECORD_CRC_BYTES + payload_length + _TFRECORD_CRC_BYTES
                )
                total += 1
    return total


def _pad_batch(batch: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    missing = batch_size - len(batch["valid"])
    if missing == 0:
        return batch

    def padding(value):
        if value.dtype == object:  # Strings (titles) pad with empty bytes.
            return np.full((missing,) + value.shape[1:], b"", object)
        return np.zeros((missing,) + value.shape[1:], value.dtype)

    return {key: np.concatenate([value, padding(value)]) for key, value in batch.items()}


def _check_batch_divides_mesh(
    global_batch_size: int, mesh: jax.sharding.Mesh, batch_sharding
) -> None:
    shardings = batch_sharding.values() if isinstance(batch_sharding, dict) else [batch_sharding]
    for sharding in shardings:
        spec = getattr(sharding, "spec", None)
        if not spec or spec[0] is None:
            continue
        axes = spec[0] if isinstance(spec[0], tuple) else (spec[0],)
        num_shards = int(np.prod([mesh.shape[axis] for axis in axes]))
        if global_batch_size % num_shards:
            raise ValueError(
                f"global_batch_size {global_batch_size} is not divisible by the "
                f"{num_shards} devices of mesh axes {axes}"
            )


def _to_global_arrays(
    batch: dict[str, np.ndarray], batch_sharding, global_batch_size: int
) -> dict[str, jax.Array]:
    global_batch = {}
    for key, local_array in batch.items():
        sharding = batch_sharding[key] if isinstance(batch_sharding, dict) else batch_sharding
        global_shape = (global_batch_size,) + local_array.shape[1:]
        global_batch[key] = jax.make_array_from_process_local_data(
            sharding, local_array, global_shape
        )
    return global_batch


class _PrefetchIterator:
    """Converts host batches to global arrays on a background thread, `depth` batches ahead."""

    _END = object()

    def __init__(self, host_batches, to_global, depth: int):
        self._host_batches = host_batches
        self._to_global = to_global
        self._depth = depth
        self._stop = threading.Event()
        if depth > 0:
            self._queue = queue.Queue(maxsize=depth)
            self._thread = threading.Thread(target=self._fill, name="input-prefetch", daemon=True)
            self._thread.start()

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, jax.Array]:
        if self._depth == 0:
            return self._to_global(next(self._host_batches))
        item = self._queue.get()
        if item is self._END:
            self._queue.put(self._END)
            raise StopIteration
        if isinstance(item, BaseException):
            self._queue.put(item)
            raise item
        return item

    def close(self) -> None:
        """Stops the background thread; the iterator yields nothing more."""
        self._stop.set()
        if self._depth > 0:
            while self._thread.is_alive():
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    self._thread.join(timeout=0.1)

    def _fill(self) -> None:
        try:
            for batch in self._host_batches:
                if not self._put(self._to_global(batch)):
                    return
        except Exception as error:  # Handed to the consumer, which raises it.
            logging.exception("Input pipeline failed")
            self._put(error)
            return
        self._put(self._END)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


def choose_num_streams(config, recorded: int | None) -> int:
    """The stream count: the config's, else the checkpoint's if it fits, else one per process.

    Keeping a checkpoint's stream count keeps the data order when a run resumes on a different
    number of hosts.
    """
    recorded_fits = (
        bool(recorded)
        and recorded % jax.process_count() == 0
        and config.global_batch_size % recorded == 0
    )
    if recorded_fits and not config.data.num_streams:
        chosen = recorded
    else:
        chosen = resolve_num_streams(config)
    if recorded and recorded != chosen:
        logging.warning(
            "The checkpoint's data order used %d streams, this run uses %d: the order "
            "of the remaining examples changes (set config.data.num_streams=%d to keep "
            "it).",
            recorded,
            chosen,
            recorded,
        )
    return chosen
