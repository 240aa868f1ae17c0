"""Throughput of the host input pipeline: read, parse, decode, resize, normalise, batch.

Measures examples per second of `input_pipeline.make_host_dataset` iterated as numpy, with
no device work, so the figure can be compared with what the training step consumes. Without
a data directory it writes a synthetic shard set first (JPEGs with the stored shorter side
a converter would write for the config).

Run it:
  python -m item_jax.cli.bench input --config base.py [--data_dir DIR]
"""

import io
import os
import tempfile
import time

import jax
import numpy as np
import tensorflow as tf
from PIL import Image

from item_jax.data import input_pipeline, tokenizer

BENCHMARK_SPLIT = "train"
_MAX_SYNTHETIC_EXAMPLES = 4096
_SYNTHETIC_FILES = 8
_SYNTHETIC_ASPECT = 4 / 3
_BASE_STORED_SIDE = 256


def synthetic_stored_side(image_size: int) -> int:
    """Shorter side of the synthetic JPEGs: 256 for base-sized models, else 2 x image_size."""
    return max(image_size, min(_BASE_STORED_SIDE, 2 * image_size))


def write_synthetic_shards(
    directory: str,
    *,
    num_examples: int,
    num_files: int,
    stored_side: int,
    vocab_size: int,
    seed: int = 0,
) -> None:
    """Writes `BENCHMARK_SPLIT` shards of photo-like 4:3 JPEGs, shorter side `stored_side`."""
    rng = np.random.default_rng(seed)
    writers = [
        tf.io.TFRecordWriter(
            os.path.join(directory, f"{BENCHMARK_SPLIT}-{k:05d}-of-{num_files:05d}.tfrecord")
        )
        for k in range(num_files)
    ]
    for index in range(num_examples):
        writers[index % num_files].write(_synthetic_listing(index, rng, stored_side, vocab_size))
    for writer in writers:
        writer.close()


def _synthetic_listing(
    index: int, rng: np.random.Generator, stored_side: int, vocab_size: int
) -> bytes:
    title_tokens = rng.integers(
        tokenizer.FIRST_WORD_PIECE_ID, vocab_size, size=rng.integers(5, 30)
    ).tolist()
    int64_features = {
        "title_tokens": title_tokens,
        "category_index": [index % 50],
        "group_index": [index],
    }
    bytes_features = {
        "id": f"synthetic-{index}".encode(),
        "title": b"synthetic title",
        "image": _photo_like_jpeg(rng, stored_side),
        "category": b"",
        "group": b"",
    }
    feature = {
        name: tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        for name, values in int64_features.items()
    }
    feature.update(
        {
            name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
            for name, value in bytes_features.items()
        }
    )
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _photo_like_jpeg(rng: np.random.Generator, shorter_side: int) -> bytes:
    """Smooth random colour fields plus grain: compresses and decodes like a product photo."""
    width = round(shorter_side * _SYNTHETIC_ASPECT)
    coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    smooth = np.asarray(
        Image.fromarray(coarse).resize((width, shorter_side), Image.Resampling.BICUBIC), np.int16
    )
    grain = rng.integers(-12, 13, size=smooth.shape, dtype=np.int16)
    pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def benchmark_input(
    config,
    *,
    data_dir: str | None = None,
    num_batches: int = 50,
    warmup_batches: int = 5,
    train_examples_per_s: float | None = None,
) -> dict:
    """Measures this host's pipeline throughput in examples per second.

    Args:
      config: uses model.image_size, model.max_text_len, global_batch_size,
        data.shuffle_buffer and seed.
      data_dir: shards to read; None writes a synthetic shard set to a temporary directory.
      num_batches: timed host batches.
      warmup_batches: batches read before timing starts (pipeline fill, autotuning).
      train_examples_per_s: the training step's consumption per host, reported as
        `host_needed_examples_per_s` for comparison.

    Returns:
      A dict of the figures, ready for JSON.
    """
    host_batch_size = config.global_batch_size // jax.process_count()
    image_size = config.model.image_size
    with tempfile.TemporaryDirectory(prefix="item_jax_input_bench_") as scratch_dir:
        data_label = "user"
        if data_dir is None:
            stored_side = synthetic_stored_side(image_size)
            num_examples = min(
                _MAX_SYNTHETIC_EXAMPLES, host_batch_size * (num_batches + warmup_batches)
            )
            write_synthetic_shards(
                scratch_dir,
                num_examples=num_examples,
                num_files=_SYNTHETIC_FILES,
                stored_side=stored_side,
                vocab_size=config.model.vocab_size,
                seed=config.seed,
            )
            data_dir, data_label = scratch_dir, f"synthetic-jpeg-{stored_side}"
        dataset = input_pipeline.make_host_dataset(
            data_dir,
            BENCHMARK_SPLIT,
            image_size=image_size,
            max_text_len=config.model.max_text_len,
            host_batch_size=host_batch_size,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            shuffle_buffer=config.data.shuffle_buffer,
            seed=config.seed,
        )
        num_files = len(input_pipeline.list_split_files(data_dir, BENCHMARK_SPLIT))
        seconds, cpu_seconds = _time_batches(dataset, num_batches, warmup_batches)
    num_examples_timed = num_batches * host_batch_size
    examples_per_s = num_examples_timed / seconds
    cpu_count = os.cpu_count() or 1
    return {
        "examples_per_s": round(examples_per_s, 1),
        "examples_per_s_per_core": round(examples_per_s / cpu_count, 1),
        "cpu_count": cpu_count,
        # CPU time is steadier than wall time on a shared host; cores / this = ideal rate.
        "cpu_ms_per_example": round(1000 * cpu_seconds / num_examples_timed, 3),
        "seconds": round(seconds, 3),
        "timed_batches": num_batches,
        "image_size": image_size,
        "host_batch_size": host_batch_size,
        "num_files": num_files,
        "data": data_label,
        "synthetic": data_label != "user",
        "host_needed_examples_per_s": train_examples_per_s,
    }


def _time_batches(
    dataset: tf.data.Dataset, num_batches: int, warmup_batches: int
) -> tuple[float, float]:
    """Returns (wall seconds, CPU seconds of this process's threads) for `num_batches`."""
    batches = dataset.as_numpy_iterator()
    for _ in range(warmup_batches):
        next(batches)
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(num_batches):
        next(batches)
    return time.perf_counter() - wall_start, time.process_time() - cpu_start
