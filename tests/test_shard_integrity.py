"""Damaged shards are named, with their offset, before or during training."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import small_config

from item_jax import train_loop
from item_jax.data import dataset_info, shard_integrity

pytestmark = pytest.mark.faults

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def shards(catalog_shards, tmp_path):
    """A private copy of the test catalog's shards, safe to damage."""
    copy = tmp_path / "shards"
    shutil.copytree(catalog_shards, copy)
    return str(copy)


def _train_shard(data_dir):
    info = dataset_info.load_dataset_info(data_dir)
    return os.path.join(data_dir, info["splits"]["train"]["files"][0])


def _zero_bytes(path, offsets, length=64):
    with open(path, "r+b") as shard:
        for offset in offsets:
            shard.seek(offset)
            shard.write(b"\0" * length)


def _truncate(path, fraction=0.6):
    with open(path, "r+b") as shard:
        shard.truncate(int(os.path.getsize(path) * fraction))


def _break_image(path, record_index):
    """Rewrites one record's JPEG as same-length garbage: framing and CRCs stay valid, the
    shard keeps its size, only decoding the image fails. Returns the listing's id."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    example = tf.train.Example.FromString(records[record_index])
    image = example.features.feature["image"].bytes_list
    image.value[0] = b"\xff\xd8\xff" + b"\x00" * (len(image.value[0]) - 3)
    records[record_index] = example.SerializeToString()
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return example.features.feature["id"].bytes_list.value[0].decode()


def _verify(data_dir, *flags):
    result = subprocess.run(
        [sys.executable, "-m", "item_jax.cli.verify", "--data_dir", data_dir, *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    return result.returncode, result.stdout


def test_converter_records_each_shard_size_count_and_checksum(shards):
    info = dataset_info.load_dataset_info(shards)
    for split in shard_integrity.SPLITS:
        records = shard_integrity.recorded_shards(info, split)
        assert [record["file"] for record in records] == info["splits"][split]["files"]
        assert sum(record["records"] for record in records) == info["splits"][split]["num_examples"]
        for record in records:
            path = os.path.join(shards, record["file"])
            assert record["bytes"] == os.path.getsize(path)
            assert record == shard_integrity.describe_shard(path, record["records"])
    reports = shard_integrity.verify_data_dir(shards, info)
    assert reports and all(report.ok for report in reports), reports


def test_verify_lists_a_zeroed_and_a_truncated_shard_with_the_offset(shards):
    assert _verify(shards)[0] == 0
    info = dataset_info.load_dataset_info(shards)
    train_shard = _train_shard(shards)
    size = os.path.getsize(train_shard)
    _zero_bytes(train_shard, [size // 4, size // 2, 3 * size // 4])
    test_shard = os.path.join(shards, info["splits"]["test"]["files"][0])
    _truncate(test_shard)

    returncode, stdout = _verify(shards)
    assert returncode == 1, stdout
    lines = stdout.strip().splitlines()
    broken = [line for line in lines if "BROKEN" in line]
    assert len(broken) == 2, stdout
    assert broken[0].startswith(f"{train_shard}: BROKEN at byte ")
    assert "corrupted record" in broken[0]
    assert broken[1].startswith(f"{test_shard}: BROKEN at byte ")
    assert "truncated record" in broken[1]
    offset = int(broken[0].split("at byte ")[1].split()[0])
    assert 0 < offset <= size // 4  # The first bad record starts at or before the damage.
    summary = json.loads(lines[-1])
    assert summary["broken"] == 2 and summary["broken_files"] == [train_shard, test_shard]


def test_training_refuses_to_start_on_a_truncated_shard(shards, tmp_path):
    train_shard = _train_shard(shards)
    _truncate(train_shard)
    config = small_config(total_steps=4, **{"data.dir": shards})
    with pytest.raises(shard_integrity.CorruptShardError) as raised:
        train_loop.train_and_evaluate(config, str(tmp_path / "run"))
    assert train_shard in str(raised.value)
    assert "dataset_info.json records" in str(raised.value)
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


@pytest.mark.slow
def test_a_corrupted_record_stops_training_naming_the_file_offset_and_checkpoint(shards, tmp_path):
    train_shard = _train_shard(shards)
    size = os.path.getsize(train_shard)
    _zero_bytes(train_shard, [size // 2])  # Same size: only reading the records finds it.
    # An epoch of the train split is about 7 batches: the run meets the damage in its first.
    config = small_config(
        total_steps=40,
        checkpoint_every_steps=2,
        **{"data.dir": shards, "data.shuffle_buffer": 1, "data.prefetch_batches": 0},
    )
    with pytest.raises(shard_integrity.CorruptShardError) as raised:
        train_loop.train_and_evaluate(config, str(tmp_path / "run"))
    message = str(raised.value)
    assert f"{train_shard}: BROKEN at byte " in message
    assert "corrupted record" in message
    assert "last good checkpoint is step" in message or "no checkpoint was written" in message


def _records(workdir, split):
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        return [record for record in map(json.loads, f) if record["split"] == split]


@pytest.mark.slow
def test_skip_mode_trains_through_a_broken_shard_counts_it_and_resumes_exactly(shards, tmp_path):
    train_shard = _train_shard(shards)
    info = dataset_info.load_dataset_info(shards)
    recorded = shard_integrity.recorded_shards(info, "train")[0]["records"]
    _zero_bytes(train_shard, [os.path.getsize(train_shard) // 2])
    readable = shard_integrity.scan_shard(train_shard).records
    assert 0 < readable < recorded
    config = small_config(
        total_steps=8,
        checkpoint_every_steps=4,
        **{"data.dir": shards, "data.on_corrupt_record": "skip"},
    )

    unbroken = str(tmp_path / "unbroken")
    train_loop.train_and_evaluate(config, unbroken)
    [data_record] = _records(unbroken, "data")
    name = os.path.basename(train_shard)
    assert data_record[f"corrupt_records_left_out.{name}"] == recorded - readable
    assert data_record["corrupt_records_left_out"] == recorded - readable
    train = _records(unbroken, "train")
    assert [r["step"] for r in train] == list(range(1, 9))
    assert all(r["corrupt_records_left_out"] == recorded - readable for r in train)

    resumed = str(tmp_path / "resumed")
    assert train_loop.train_and_evaluate(config, resumed, stop_at_step=4)["step"] == 4
    train_loop.train_and_evaluate(config, resumed)
    by_step = {r["step"]: r["loss"] for r in _records(resumed, "train")}
    assert [by_step[step] for step in range(5, 9)] == [r["loss"] for r in train[4:]]


def test_stop_mode_is_the_default_and_a_wrong_value_is_refused(shards, tmp_path):
    from item_jax import config_check  # pylint: disable=g-import-not-at-top

    assert small_config().data.on_corrupt_record == "stop"
    config = small_config(**{"data.dir": shards, "data.on_corrupt_record": "ignore"})
    with pytest.raises(config_check.ConfigError, match=r"config\.data\.on_corrupt_record"):
        train_loop.train_and_evaluate(config, str(tmp_path / "run"))


def test_an_undecodable_image_is_named_by_verify_and_stops_training(shards, tmp_path):
    train_shard = _train_shard(shards)
    size = os.path.getsize(train_shard)
    listing_id = _break_image(train_shard, 3)
    assert os.path.getsize(train_shard) == size  # The start-up size check cannot see it.

    code, out = _verify(shards, "--images")
    assert code == 1
    assert f"{train_shard}: record 3 (listing {listing_id!r}): image undecodable" in out
    assert json.loads(out.splitlines()[-1])["undecodable_images"] == 1

    config = small_config(
        total_steps=40, checkpoint_every_steps=2, **{"data.dir": shards, "data.prefetch_batches": 0}
    )
    with pytest.raises(shard_integrity.CorruptShardError) as raised:
        train_loop.train_and_evaluate(config, str(tmp_path / "run"))
    message = str(raised.value)
    assert f"record 3 (listing {listing_id!r})" in message and train_shard in message
    assert "on_corrupt_record='skip'" in message


@pytest.mark.slow
def test_skip_mode_leaves_out_an_undecodable_image_counts_it_and_resumes_exactly(shards, tmp_path):
    train_shard = _train_shard(shards)
    _break_image(train_shard, 3)
    config = small_config(
        total_steps=8,
        checkpoint_every_steps=4,
        **{"data.dir": shards, "data.on_corrupt_record": "skip"},
    )
    unbroken = str(tmp_path / "unbroken")
    train_loop.train_and_evaluate(config, unbroken)
    [data_record] = _records(unbroken, "data")
    assert data_record["undecodable_images_left_out"] == 1
    assert data_record[f"undecodable_images_left_out.{os.path.basename(train_shard)}"] == 1
    assert data_record["corrupt_records_left_out"] == 0
    train = _records(unbroken, "train")
    assert [r["step"] for r in train] == list(range(1, 9))

    resumed = str(tmp_path / "resumed")
    train_loop.train_and_evaluate(config, resumed, stop_at_step=4)
    train_loop.train_and_evaluate(config, resumed)
    by_step = {r["step"]: r["loss"] for r in _records(resumed, "train")}
    assert [by_step[step] for step in range(5, 9)] == [r["loss"] for r in train[4:]]


@pytest.mark.slow
def test_skip_mode_validates_and_evaluates_through_a_damaged_train_split(shards, tmp_path):
    from item_jax import train_step  # pylint: disable=g-import-not-at-top
    from item_jax.evaluation import protocol  # pylint: disable=g-import-not-at-top

    train_shard = _train_shard(shards)
    info = dataset_info.load_dataset_info(shards)
    size = os.path.getsize(train_shard)
    _zero_bytes(train_shard, [size // 3, size // 2])
    left_out = (
        shard_integrity.recorded_shards(info, "train")[0]["records"]
        - shard_integrity.scan_shard(train_shard).records
    )
    assert left_out > 0
    config = small_config(
        total_steps=4,
        checkpoint_every_steps=4,
        **{"data.dir": shards, "data.on_corrupt_record": "skip"},
    )
    workdir = str(tmp_path / "run")
    # The end-of-run validation fits the title TF-IDF reference on the train split's titles.
    metrics = train_loop.train_and_evaluate(
        config, workdir, evaluate_fn=protocol.make_validation_evaluator(config, shards)
    )
    assert metrics["step"] == 4
    [validation] = _records(workdir, "validation")
    assert validation["step"] == 4 and "references.title_tfidf.retrieval.recall@1" in validation
    assert validation["data.records_left_out_validation"] == 0

    # A fresh process, as a user evaluates: the run's config.json carries the mode.
    result = _evaluate_cli("--workdir", workdir, "--out", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "eval" / "metrics.json", encoding="utf-8") as f:
        data = json.load(f)["data"]
    assert data["records_left_out_train"] == left_out and data["records_left_out_test"] == 0
    assert data["num_train_for_probe"] == info["splits"]["train"]["num_examples"] - left_out

    # Stop mode meets the same damage in evaluation and names the shard, not a traceback.
    stop_config, params, _ = train_step.restore_trained_params(workdir)
    stop_config.data.on_corrupt_record = "stop"
    with pytest.raises(shard_integrity.CorruptShardError) as raised:
        protocol.evaluate_params(params, stop_config, shards)
    assert f"{train_shard}: BROKEN at byte " in str(raised.value)
    assert "train split" in str(raised.value)


def _evaluate_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "item_jax.cli.evaluate", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
