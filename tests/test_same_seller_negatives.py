"""Negatives from a listing's own seller (`config.same_seller_negatives`): the manifest's
"seller" reaches the batch, and ITM partners and contrastive negatives stay within it."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from conftest import small_config

from item_jax import batch as batch_lib
from item_jax import configs, masking, objectives, train_loop
from item_jax.catalogs import synthetic as synthetic_catalog
from item_jax.data import convert, dataset_info, input_pipeline, manifest
from item_jax.model import model_from_config


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _anchors_and_views(rows, seed=0):
    rng = np.random.default_rng(seed)
    anchors = _unit(rng.normal(size=(rows, 8)))
    views = _unit(anchors + 0.5 * rng.normal(size=(rows, 8)))
    return jnp.asarray(anchors, jnp.float32), jnp.asarray(views, jnp.float32)


def test_info_nce_with_sellers_is_each_sellers_own_info_nce():
    anchors, views = _anchors_and_views(9)
    sellers = jnp.asarray([0, 0, 0, 1, 1, 1, 1, 2, 2])
    ones = jnp.ones((9,))
    loss, _ = objectives.info_nce(
        anchors, views, ones, ones, 0.1, seller_index=sellers, min_seller_negatives=1
    )
    # Each row's cross-entropy is the one over its seller's rows alone: the mean over rows
    # is the sellers' own InfoNCE losses weighted by their row counts.
    expected = 0.0
    for rows in (np.arange(0, 3), np.arange(3, 7), np.arange(7, 9)):
        own, _ = objectives.info_nce(anchors[rows], views[rows], ones[rows], ones[rows], 0.1)
        expected += len(rows) * float(own) / 9
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)

    every_seller, _ = objectives.info_nce(anchors, views, ones, ones, 0.1)
    assert abs(float(loss) - float(every_seller)) > 1e-2
    one_seller, _ = objectives.info_nce(
        anchors, views, ones, ones, 0.1, seller_index=jnp.zeros((9,), jnp.int32)
    )
    np.testing.assert_allclose(float(one_seller), float(every_seller), rtol=1e-6)


def test_a_seller_with_too_few_negatives_in_the_batch_keeps_the_whole_batchs():
    anchors, views = _anchors_and_views(12, seed=1)
    ones = jnp.ones((12,))
    # Seller 0 has 9 rows (8 negatives each); sellers 1, 2 and 3 one row each (none).
    sellers = np.asarray([0] * 9 + [1, 2, 3])
    loss, _ = objectives.info_nce(
        anchors, views, ones, ones, 0.1, seller_index=jnp.asarray(sellers)
    )
    # By hand: seller 0's rows compare with seller 0's columns, the lone rows with all.
    columns = np.where((sellers == 0)[:, None], sellers[:, None] == sellers[None, :], True)
    similarity = np.asarray(anchors) @ np.asarray(views).T / 0.1

    def cross_entropy(logits):
        logits = np.where(columns, logits, -np.inf)
        top = logits.max(axis=1)
        return top + np.log(np.exp(logits - top[:, None]).sum(axis=1)) - np.diag(logits)

    expected = 0.5 * (cross_entropy(similarity) + cross_entropy(similarity.T)).mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)

    every_seller, _ = objectives.info_nce(anchors, views, ones, ones, 0.1)
    no_seller_has_enough, _ = objectives.info_nce(
        anchors, views, ones, ones, 0.1, seller_index=jnp.arange(12, dtype=jnp.int32)
    )
    np.testing.assert_allclose(float(no_seller_has_enough), float(every_seller), rtol=1e-6)


def test_itm_partners_are_the_same_sellers_where_the_candidates_allow():
    rng = np.random.default_rng(1)
    groups = jnp.arange(64, dtype=jnp.int32) // 2
    eligible = jnp.ones((64,), jnp.int32)
    # Rows 0-62 have three sellers; row 63 is a seller alone.
    sellers = np.concatenate([rng.integers(0, 3, 63), [9]]).astype(np.int32)
    same, total, lone_partners = 0, 0, 0
    for seed in range(10):
        key = jax.random.PRNGKey(seed)
        source, matched = masking.draw_itm_partners(
            key, groups, eligible, 0.5, seller_index=jnp.asarray(sellers)
        )
        source, mismatched = np.asarray(source), np.asarray(matched) == 0
        assert (np.asarray(groups)[source[mismatched]] != np.asarray(groups)[mismatched]).all()
        shared = mismatched[:63]
        same += int((sellers[source[:63]][shared] == sellers[:63][shared]).sum())
        total += int(shared.sum())
        lone_partners += int(mismatched[63])
    # Each of 8 random candidates is of the row's seller about a third of the time, so one
    # of them is in all but (2/3)^8 = 4% of draws; without sellers a third would be.
    assert total > 200 and same / total > 0.9
    assert lone_partners > 0  # A seller alone still gets mismatched pairs.

    key = jax.random.PRNGKey(4)
    plain = masking.draw_itm_partners(key, groups, eligible, 0.5)
    one_seller = masking.draw_itm_partners(
        key, groups, eligible, 0.5, seller_index=jnp.zeros((64,), jnp.int32)
    )
    for got, want in zip(one_seller, plain):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_the_loss_reads_sellers_only_when_asked():
    for enabled in (True, False):
        config = small_config(
            objectives=objectives.ITEM_OBJECTIVES + ",contrastive", same_seller_negatives=enabled
        )
        model = model_from_config(config.model)
        params = model.init(jax.random.key(0), *batch_lib.dummy_model_inputs(model))["params"]
        batch = {k: jnp.asarray(v) for k, v in batch_lib.random_batch(config.model, 16).items()}
        fns = objectives.make_objective_fns(model, config)
        one = fns.loss(params, batch, jax.random.key(3))[1]
        two = dict(batch, seller_index=jnp.arange(16, dtype=jnp.int32) % 2)
        split = fns.loss(params, two, jax.random.key(3))[1]
        differs = abs(float(one["contrastive_loss"]) - float(split["contrastive_loss"])) > 1e-4
        assert differs == enabled


def test_stored_runs_drew_negatives_from_every_seller():
    assert configs.upgrade_stored_config({"seed": 0}).same_seller_negatives is False


@pytest.fixture(scope="module")
def seller_shards(tmp_path_factory):
    """A small embedded catalog whose listings name one of three sellers, converted."""
    root = tmp_path_factory.mktemp("sellers")
    manifest_path = synthetic_catalog.generate_catalog(
        root / "catalog", num_products=48, listings_per_product=3, image_size=48
    )
    lines = manifest_path.read_text("utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    for index, record in enumerate(records):
        record["seller"] = f"shop {index % 3}"
    manifest_path.write_text("".join(json.dumps(r) + "\n" for r in records), "utf-8")
    convert.convert_catalog(
        str(manifest_path),
        str(root / "shards"),
        image_size=32,
        vocab_size=512,
        num_workers=1,
        show_progress=False,
    )
    return manifest_path, {r["id"]: r["seller"] for r in records}, str(root / "shards")


def test_manifest_sellers_reach_the_batch(seller_shards):
    manifest_path, seller_of, shard_dir = seller_shards
    listings = manifest.read_manifest(str(manifest_path)).listings
    assert {listing.seller for listing in listings} == {"shop 0", "shop 1", "shop 2"}
    assert dataset_info.load_dataset_info(shard_dir)["num_with_seller"] == len(listings) == 144

    sellers, ids = [], []
    for batch, batch_ids in input_pipeline.iterate_eval_batches(
        shard_dir, "train", image_size=32, max_text_len=16, batch_size=16
    ):
        sellers.extend(batch["seller_index"][: len(batch_ids)].tolist())
        ids.extend(batch_ids)
    assert len(ids) > 30
    names = np.asarray([seller_of[listing_id] for listing_id in ids])
    sellers = np.asarray(sellers)
    same_name = names[:, None] == names[None, :]
    np.testing.assert_array_equal(sellers[:, None] == sellers[None, :], same_name)


def test_shards_without_sellers_are_one_seller(tmp_path):
    path = str(tmp_path / "train-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for index in range(3):
            feature = {
                "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x%d" % index])),
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b""])),
                "title_tokens": tf.train.Feature(int64_list=tf.train.Int64List(value=[7, 8])),
                "group_index": tf.train.Feature(int64_list=tf.train.Int64List(value=[index])),
                "category_index": tf.train.Feature(int64_list=tf.train.Int64List(value=[0])),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())
    (batch, _), *_ = input_pipeline.iterate_eval_batches(
        str(tmp_path), "train", image_size=16, max_text_len=8, batch_size=3
    )
    assert len(set(batch["seller_index"].tolist())) == 1


def test_a_catalog_without_sellers_trains_without_the_seller_mask(trained_workdir):
    with open(os.path.join(trained_workdir, "config.json"), encoding="utf-8") as f:
        stored = json.load(f)
    assert stored["same_seller_negatives"] is False
    # Its batches are one seller's as they are: a resume need not replay the stream.
    assert stored["data"]["seller_buckets"] == 0


def test_a_catalog_with_sellers_trains_with_them(seller_shards, tmp_path):
    _, _, shard_dir = seller_shards
    config = small_config(
        total_steps=2, eval_every_steps=0, checkpoint_every_steps=2, **{"data.dir": shard_dir}
    )
    config.objectives = objectives.ITEM_OBJECTIVES + ",contrastive"
    metrics = train_loop.train_and_evaluate(config, str(tmp_path))
    assert np.isfinite(metrics["loss"]) and metrics["itm_loss"] > 0
    with open(tmp_path / "config.json", encoding="utf-8") as f:
        stored = json.load(f)
    assert stored["same_seller_negatives"] is True
    assert stored["data"]["seller_buckets"] == config.data.seller_buckets > 0


def test_a_numeric_seller_is_read_as_text(tmp_path):
    path = tmp_path / "manifest.jsonl"
    path.write_text(
        json.dumps({"id": 1, "title": "a mug", "image": "", "seller": 4711}) + "\n", "utf-8"
    )
    (listing,) = manifest.read_manifest(str(path)).listings
    assert listing.seller == "4711"
