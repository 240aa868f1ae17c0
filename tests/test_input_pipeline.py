"""Tests for item_jax.data.input_pipeline on small shards written in the design.md schema."""

import os

import jax
import numpy as np
import pytest
import tensorflow as tf
from jax.sharding import NamedSharding, PartitionSpec

from item_jax import batch as batch_lib
from item_jax import config_check, sharding
from item_jax.benchmarks import input_throughput
from item_jax.configs import defaults as config_defaults
from item_jax.data import input_pipeline, tokenizer

IMAGE_SIZE = 16
MAX_TEXT_LEN = 8


def _listing(index: int, rng: np.random.Generator, seller: str | None = None) -> bytes:
    """One serialized listing; its group_index is its index, so every row is traceable."""
    if index % 7 == 3:
        image = b""
    else:
        pixels = rng.integers(0, 256, size=(20, 28, 3), dtype=np.uint8)
        image = tf.io.encode_jpeg(pixels).numpy()
    title_tokens = [] if index % 5 == 4 else list(range(5, 5 + index % 9 + 1))
    features = {
        "id": [f"item-{index}".encode()],
        "title": [b"some title" if title_tokens else b""],
        "title_tokens": title_tokens,
        "image": [image],
        "category": [b"home/mugs"],
        "category_index": [index % 3],
        "group": [b""],
        "group_index": [index],
    }
    if seller is not None:
        features["seller"] = [seller.encode()]
    feature = {}
    for name, values in features.items():
        if name in ("title_tokens", "category_index", "group_index"):
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        else:
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString()


def _write_split(directory, split: str, num_examples: int, num_files: int) -> None:
    rng = np.random.default_rng(num_examples)
    for file_index in range(num_files):
        path = os.path.join(directory, f"{split}-{file_index:05d}-of-{num_files:05d}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for index in range(file_index, num_examples, num_files):
                writer.write(_listing(index, rng))


def _host_dataset(data_dir, **overrides):
    arguments = dict(
        image_size=IMAGE_SIZE,
        max_text_len=MAX_TEXT_LEN,
        host_batch_size=4,
        process_index=0,
        process_count=1,
        shuffle_buffer=8,
        seed=3,
    )
    arguments.update(overrides)
    return input_pipeline.make_host_dataset(data_dir, "train", **arguments)


def _one_pass_indices(data_dir, **overrides) -> list[int]:
    dataset = _host_dataset(data_dir, repeat=False, drop_remainder=False, **overrides)
    return [int(i) for batch in dataset.as_numpy_iterator() for i in batch["group_index"]]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("shards")
    _write_split(str(directory), "train", num_examples=22, num_files=4)
    _write_split(str(directory), "validation", num_examples=10, num_files=1)
    return str(directory)


def test_list_split_files_sorted_and_missing_split_names_dir(data_dir):
    files = input_pipeline.list_split_files(data_dir, "train")
    assert [os.path.basename(f) for f in files] == [
        f"train-{k:05d}-of-00004.tfrecord" for k in range(4)
    ]
    with pytest.raises(FileNotFoundError, match="'test'.*" + os.path.basename(data_dir)):
        input_pipeline.list_split_files(data_dir, "test")


def test_batch_keys_dtypes_and_shapes(data_dir):
    batch = next(_host_dataset(data_dir).as_numpy_iterator())
    assert set(batch) == set(batch_lib.BATCH_KEYS)
    assert batch["image"].shape == (4, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert batch["image"].dtype == np.float32
    for key in ("text_tokens", "text_mask"):
        assert batch[key].shape == (4, MAX_TEXT_LEN) and batch[key].dtype == np.int32
    for key in ("has_image", "has_title", "group_index", "category_index", "valid"):
        assert batch[key].shape == (4,) and batch[key].dtype == np.int32
    np.testing.assert_array_equal(batch["valid"], 1)
    np.testing.assert_array_equal(batch["text_tokens"][:, 0], tokenizer.CLS_ID)
    np.testing.assert_array_equal(batch["has_image"], batch["group_index"] % 7 != 3)
    np.testing.assert_array_equal(batch["category_index"], batch["group_index"] % 3)


def test_one_pass_sees_every_example_once(data_dir):
    assert sorted(_one_pass_indices(data_dir)) == list(range(22))


@pytest.mark.parametrize("split_files", [4, 1], ids=["shard_files", "shard_examples"])
def test_two_hosts_are_disjoint_and_cover_the_split(tmp_path, split_files):
    _write_split(str(tmp_path), "train", num_examples=15, num_files=split_files)
    host_0 = _one_pass_indices(str(tmp_path), process_index=0, process_count=2)
    host_1 = _one_pass_indices(str(tmp_path), process_index=1, process_count=2)
    assert not set(host_0) & set(host_1)
    assert sorted(host_0 + host_1) == list(range(15))


def test_order_is_reproducible_and_reshuffled_each_epoch(data_dir):
    first = _take_batches(_host_dataset(data_dir, host_batch_size=22), 2)
    again = _take_batches(_host_dataset(data_dir, host_batch_size=22), 2)
    other_seed = _take_batches(_host_dataset(data_dir, host_batch_size=22, seed=4), 1)
    np.testing.assert_array_equal(first[0]["group_index"], again[0]["group_index"])
    np.testing.assert_array_equal(first[1]["image"], again[1]["image"])
    assert sorted(first[1]["group_index"]) == list(range(22))  # One batch = one epoch.
    assert list(first[0]["group_index"]) != list(first[1]["group_index"])
    assert list(first[0]["group_index"]) != list(other_seed[0]["group_index"])


def _take_batches(dataset, count):
    return list(dataset.take(count).as_numpy_iterator())


@pytest.mark.parametrize("start_batch", [2, 7])
def test_start_batch_resumes_the_same_sequence(data_dir, start_batch):
    # 22 examples, batches of 4: batch 7 starts in the second epoch.
    fresh = _take_batches(_host_dataset(data_dir), start_batch + 4)
    resumed = _take_batches(_host_dataset(data_dir, start_batch=start_batch), 4)
    for expected, actual in zip(fresh[start_batch:], resumed, strict=True):
        for key in batch_lib.BATCH_KEYS:
            np.testing.assert_array_equal(expected[key], actual[key], err_msg=key)


def test_start_batch_resume_with_example_sharding(tmp_path):
    _write_split(str(tmp_path), "train", num_examples=9, num_files=1)
    hosts = dict(process_index=1, process_count=2, host_batch_size=3)
    fresh = _take_batches(_host_dataset(str(tmp_path), **hosts), 6)
    resumed = _take_batches(_host_dataset(str(tmp_path), start_batch=4, **hosts), 2)
    for expected, actual in zip(fresh[4:], resumed, strict=True):
        np.testing.assert_array_equal(expected["group_index"], actual["group_index"])


def test_eval_pads_last_batch_and_returns_every_id_once(data_dir):
    batches = list(
        input_pipeline.iterate_eval_batches(
            data_dir, "validation", image_size=IMAGE_SIZE, max_text_len=MAX_TEXT_LEN, batch_size=4
        )
    )
    assert len(batches) == 3
    all_ids = [listing_id for _, ids in batches for listing_id in ids]
    assert sorted(all_ids) == sorted(f"item-{i}" for i in range(10))
    for batch, ids in batches:
        assert set(batch) == set(batch_lib.BATCH_KEYS)
        assert batch["image"].shape == (4, IMAGE_SIZE, IMAGE_SIZE, 3)
        valid_rows = batch["valid"] == 1
        assert [f"item-{i}" for i in batch["group_index"][valid_rows]] == ids
    last_batch, last_ids = batches[-1]
    np.testing.assert_array_equal(last_batch["valid"], [1, 1, 0, 0])
    assert len(last_ids) == 2
    np.testing.assert_array_equal(last_batch["text_mask"][2:], 0)


def test_eval_two_hosts_cover_the_split(data_dir):
    ids_per_host = []
    for process_index in range(2):
        ids_per_host.append(
            [
                listing_id
                for _, ids in input_pipeline.iterate_eval_batches(
                    data_dir,
                    "train",
                    image_size=IMAGE_SIZE,
                    max_text_len=MAX_TEXT_LEN,
                    batch_size=5,
                    process_index=process_index,
                    process_count=2,
                )
                for listing_id in ids
            ]
        )
    assert not set(ids_per_host[0]) & set(ids_per_host[1])
    assert sorted(ids_per_host[0] + ids_per_host[1]) == sorted(f"item-{i}" for i in range(22))


def _tiny_config(global_batch_size: int):
    config = config_defaults.default_config()
    config.model.image_size = IMAGE_SIZE
    config.model.max_text_len = MAX_TEXT_LEN
    config.global_batch_size = global_batch_size
    config.data.shuffle_buffer = 8
    config.data.prefetch_batches = 2
    return config


def test_global_iterator_builds_sharded_arrays(data_dir):
    mesh = jax.make_mesh((8,), ("data",))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    config = _tiny_config(global_batch_size=8)
    iterator = input_pipeline.make_global_iterator(config, data_dir, mesh, sharding, start_step=1)
    batches = [next(iterator) for _ in range(3)]
    iterator.close()
    expected = _take_batches(
        _host_dataset(data_dir, host_batch_size=8, shuffle_buffer=8, seed=config.seed), 4
    )[1:]
    for batch, host_batch in zip(batches, expected, strict=True):
        assert set(batch) == set(batch_lib.BATCH_KEYS)
        for key, array in batch.items():
            assert isinstance(array, jax.Array)
            assert array.sharding == sharding, key
            assert array.shape[0] == 8
            assert len(array.addressable_shards) == 8
            np.testing.assert_array_equal(np.asarray(array), host_batch[key], err_msg=key)
    assert batches[0]["image"].shape == (8, IMAGE_SIZE, IMAGE_SIZE, 3)


def test_global_iterator_rejects_batch_that_does_not_split_over_mesh(data_dir):
    mesh = jax.make_mesh((8,), ("data",))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    with pytest.raises(ValueError, match="global_batch_size 12 is not divisible by the 8"):
        input_pipeline.make_global_iterator(
            _tiny_config(global_batch_size=12), data_dir, mesh, sharding
        )


def test_benchmark_reports_throughput_on_synthetic_shards():
    config = _tiny_config(global_batch_size=8)
    result = input_throughput.benchmark_input(
        config, num_batches=3, warmup_batches=1, train_examples_per_s=123.0
    )
    assert result["data"] == f"synthetic-jpeg-{2 * IMAGE_SIZE}" and result["synthetic"]
    assert result["examples_per_s"] > 0 and result["examples_per_s_per_core"] > 0
    assert result["host_batch_size"] == 8 and result["image_size"] == IMAGE_SIZE
    assert result["num_files"] == 8
    assert result["host_needed_examples_per_s"] == 123.0


def _global_batches(config, data_dir, num_batches, start_step=0):
    mesh = jax.make_mesh((8,), ("data",))
    iterator = input_pipeline.make_global_iterator(
        config, data_dir, mesh, NamedSharding(mesh, PartitionSpec("data")), start_step=start_step
    )
    batches = [jax.device_get(next(iterator)) for _ in range(num_batches)]
    iterator.close()
    return batches


def test_global_batch_concatenates_the_streams_in_order(data_dir):
    config = _tiny_config(global_batch_size=8)
    config.data.num_streams = 2
    batches = _global_batches(config, data_dir, 3)
    streams = [
        _take_batches(
            _host_dataset(
                data_dir,
                host_batch_size=4,
                shuffle_buffer=8,
                seed=config.seed,
                process_index=stream,
                process_count=2,
            ),
            3,
        )
        for stream in range(2)
    ]
    for index, batch in enumerate(batches):
        for key in batch_lib.BATCH_KEYS:
            expected = np.concatenate([streams[0][index][key], streams[1][index][key]])
            np.testing.assert_array_equal(batch[key], expected, err_msg=key)
    # The streams are disjoint parts of the split: files 0 and 2 against files 1 and 3.
    assert set(streams[0][0]["group_index"] % 2) == {0}
    assert set(streams[1][0]["group_index"] % 2) == {1}


def test_stream_order_differs_from_one_stream_and_resumes_exactly(data_dir):
    config = _tiny_config(global_batch_size=8)
    one_stream = _global_batches(config, data_dir, 1)
    config.data.num_streams = 2
    fresh = _global_batches(config, data_dir, 6)  # 11 examples a stream: crosses an epoch.
    resumed = _global_batches(config, data_dir, 3, start_step=3)
    assert list(one_stream[0]["group_index"]) != list(fresh[0]["group_index"])
    for expected, actual in zip(fresh[3:], resumed, strict=True):
        for key in batch_lib.BATCH_KEYS:
            np.testing.assert_array_equal(expected[key], actual[key], err_msg=key)


def test_process_streams_of_a_single_process_are_all_streams():
    mesh = jax.make_mesh((8,), ("data",))
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
    assert input_pipeline.process_streams(16, 4, batch_sharding) == range(4)
    with pytest.raises(ValueError, match="config.data.num_streams: 3 streams do not divide"):
        input_pipeline.process_streams(16, 3, batch_sharding)


@pytest.mark.parametrize(
    "num_streams, process_count, message",
    [
        (-1, 1, "must be a whole number >= 0"),
        (3, 1, "3 streams do not divide global_batch_size 16"),
        (2, 4, "2 streams are not a multiple of the 4 processes"),
    ],
)
def test_num_streams_is_validated(num_streams, process_count, message):
    config = config_defaults.default_config()
    config.global_batch_size = 16
    config.data.num_streams = num_streams
    mesh = sharding.make_mesh(config.mesh)
    with pytest.raises(config_check.ConfigError, match=f"config.data.num_streams: {message}"):
        config_check.check_config(config)
        config_check.check_config_against_mesh(config, mesh, process_count)


# Hashed into different buckets of 8 (the test below checks it), as sellers of a catalog
# with fewer sellers than buckets mostly are.
SELLERS = ("google", "openmoji", "twitter")


def _write_seller_split(directory, examples_per_seller: int) -> None:
    """One train file; listing i is SELLERS[i % 3]'s, so a row's seller is its index mod 3."""
    rng = np.random.default_rng(0)
    path = os.path.join(directory, "train-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for index in range(examples_per_seller * len(SELLERS)):
            writer.write(_listing(index, rng, seller=SELLERS[index % len(SELLERS)]))


def test_seller_buckets_draw_each_batch_from_one_seller_and_lose_no_listing(tmp_path):
    buckets = tf.strings.to_hash_bucket_fast(list(SELLERS), 8).numpy()
    assert len(set(buckets)) == len(SELLERS)
    # 8 listings a seller, batches of 4: an epoch is exactly two batches of each seller.
    _write_seller_split(str(tmp_path), examples_per_seller=8)
    batches = _take_batches(_host_dataset(str(tmp_path), seller_buckets=8), 12)
    for batch in batches:
        assert len(set(batch["group_index"] % 3)) == 1, batch["group_index"]
        assert len(set(batch["seller_index"])) == 1
    for epoch in range(2):
        rows = np.concatenate([b["group_index"] for b in batches[6 * epoch : 6 * epoch + 6]])
        assert sorted(rows) == list(range(24))
    # Without buckets the same stream mixes the sellers in its batches.
    mixed = _take_batches(_host_dataset(str(tmp_path)), 6)
    assert any(len(set(batch["group_index"] % 3)) > 1 for batch in mixed)


def test_seller_buckets_resume_the_same_sequence(tmp_path):
    _write_seller_split(str(tmp_path), examples_per_seller=7)
    fresh = _take_batches(_host_dataset(str(tmp_path), seller_buckets=8), 9)
    resumed = _take_batches(_host_dataset(str(tmp_path), seller_buckets=8, start_batch=5), 4)
    for expected, actual in zip(fresh[5:], resumed, strict=True):
        for key in batch_lib.BATCH_KEYS:
            np.testing.assert_array_equal(expected[key], actual[key], err_msg=key)


def test_seller_buckets_change_nothing_for_a_catalog_without_sellers(data_dir):
    plain = _take_batches(_host_dataset(data_dir), 8)
    bucketed = _take_batches(_host_dataset(data_dir, seller_buckets=16), 8)
    for expected, actual in zip(plain, bucketed, strict=True):
        for key in batch_lib.BATCH_KEYS:
            np.testing.assert_array_equal(expected[key], actual[key], err_msg=key)


def test_global_iterator_reads_batches_by_seller_bucket(tmp_path):
    _write_seller_split(str(tmp_path), examples_per_seller=8)
    config = _tiny_config(global_batch_size=8)
    config.data.seller_buckets = 8
    for batch in _global_batches(config, str(tmp_path), 4):
        assert len(set(np.asarray(batch["group_index"]) % 3)) == 1


@pytest.mark.parametrize("value", [-1, True])
def test_seller_buckets_is_validated(value):
    config = config_defaults.default_config()
    config.data.seller_buckets = value
    with pytest.raises(config_check.ConfigError, match="config.data.seller_buckets: must be"):
        config_check.check_config(config)


def test_seller_buckets_need_a_repeating_stream(data_dir):
    with pytest.raises(ValueError, match="needs repeat and drop_remainder"):
        _host_dataset(data_dir, seller_buckets=4, repeat=False)
