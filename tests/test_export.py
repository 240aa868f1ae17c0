"""Export drops the optimizer state; the loader's embeddings match the in-training model."""

import json
import os

import jax
import numpy as np
import pytest

import item_jax
from item_jax import export, train_step
from item_jax.data import input_pipeline
from item_jax.model import ItemModel, model_from_config


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-5), ("bfloat16", 3e-2)])
def test_exported_embeddings_match_training(
    trained_workdir, catalog_shards, tmp_path, dtype, tolerance
):
    config, params, step = train_step.restore_trained_params(trained_workdir)
    assert step == 6
    out = str(tmp_path / "export")
    info = export.export_model(trained_workdir, out, dtype=dtype)
    assert sorted(os.listdir(out)) == [
        "config.json",
        "export_info.json",
        "params.msgpack",
        "tokenizer.model",
    ]
    num_params = sum(x.size for x in jax.tree.leaves(params))
    assert info["num_params"] == num_params
    bytes_per_param = 4 if dtype == "float32" else 2
    # Parameters only: no optimizer state (Adam would triple the size).
    assert os.path.getsize(os.path.join(out, "params.msgpack")) < 1.2 * bytes_per_param * num_params

    batch, ids = next(
        input_pipeline.iterate_eval_batches(
            catalog_shards,
            "validation",
            image_size=config.model.image_size,
            max_text_len=config.model.max_text_len,
            batch_size=8,
        )
    )
    model = model_from_config(config.model)
    training_vectors = model.apply(
        {"params": params},
        batch["text_tokens"],
        batch["text_mask"],
        batch["image"],
        batch["has_image"],
        method=ItemModel.embed,
    )
    exported = item_jax.load_exported(out)
    np.testing.assert_allclose(
        exported.embed_inputs(batch), np.asarray(training_vectors), atol=tolerance
    )
    assert len(ids) == int(batch["valid"].sum())


def test_loader_preprocesses_raw_listings_like_the_converter(
    trained_workdir, catalog_shards, tmp_path
):
    out = str(tmp_path / "export")
    export.export_model(trained_workdir, out)
    exported = item_jax.load_exported(out)
    batch, ids = next(
        input_pipeline.iterate_eval_batches(
            catalog_shards,
            "validation",
            image_size=exported.config.model.image_size,
            max_text_len=exported.config.model.max_text_len,
            batch_size=4,
        )
    )
    manifest_dir = os.path.join(os.path.dirname(catalog_shards), "catalog")
    with open(os.path.join(manifest_dir, "manifest.jsonl"), encoding="utf-8") as f:
        listings = {row["id"]: row for row in map(json.loads, f)}
    rows = [listings[i] for i in ids]
    raw = exported.preprocess(
        [os.path.join(manifest_dir, r["image"]) for r in rows], [r["title"] for r in rows]
    )
    for key in ("text_tokens", "text_mask", "has_image", "has_title"):
        np.testing.assert_array_equal(raw[key], batch[key][: len(rows)], err_msg=key)
    np.testing.assert_allclose(raw["image"], batch["image"][: len(rows)], atol=1e-6)


def test_missing_modalities_are_masked_not_zero_filled(trained_workdir, tmp_path):
    out = str(tmp_path / "export")
    export.export_model(trained_workdir, out)
    exported = item_jax.load_exported(out)
    inputs = exported.preprocess([None, b""], ["", "red mug"])
    assert inputs["has_image"].tolist() == [0, 0]
    assert inputs["has_title"].tolist() == [0, 1]
    assert inputs["text_mask"][0].sum() == 2  # [CLS] [SEP] only.
    vectors = exported.embed([None], ["red mug"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # A removed image is out of attention: whatever pixels sit in its slots change nothing.
    one = exported.preprocess([None], ["red mug"])
    noisy = dict(
        one, image=np.random.default_rng(0).uniform(-1, 1, one["image"].shape).astype(np.float32)
    )
    np.testing.assert_array_equal(exported.embed_inputs(one), exported.embed_inputs(noisy))
    shown = dict(noisy, has_image=np.ones_like(one["has_image"]))
    assert np.abs(exported.embed_inputs(shown) - exported.embed_inputs(one)).max() > 1e-4


def test_an_older_exports_config_loads_with_the_historical_values(trained_workdir, tmp_path):
    from item_jax import configs  # pylint: disable=g-import-not-at-top

    out = str(tmp_path / "export")
    export.export_model(trained_workdir, out)
    path = os.path.join(out, "config.json")
    with open(path, encoding="utf-8") as f:
        stored = json.load(f)
    # An export written before these fields existed (the conv stem is kept: the parameters
    # were trained with it).
    for dotted in ("contrastive.cross_views", "data.on_corrupt_record", "model.gelu"):
        parent, field = dotted.split(".")
        del stored[parent][field]
    del stored["init"]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(stored, f)
    config = item_jax.load_exported(out).config
    for dotted in ("contrastive.cross_views", "data.on_corrupt_record", "model.gelu"):
        parent, field = dotted.split(".")
        assert config[parent][field] == configs.HISTORICAL_VALUES[dotted]
    assert config.init.text_from == ""


def test_missing_export_files_give_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an export directory"):
        item_jax.load_exported(str(tmp_path))


def test_embed_manifest_handles_missing_modalities_and_rejects_broken_images(
    trained_workdir, tmp_path
):
    from item_jax import catalog_embedding as embed  # pylint: disable=g-import-not-at-top

    out = str(tmp_path / "export")
    export.export_model(trained_workdir, out)
    from PIL import Image  # pylint: disable=g-import-not-at-top

    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "red.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    rows = [
        dict(id="a", title="red ceramic mug", image="red.png"),
        dict(id="b", title="", image="red.png"),
        dict(id="c", title="blue tote bag", image=""),
        dict(id="d", title="broken photo", image="broken.jpg"),
    ]
    manifest_path = tmp_path / "m.jsonl"
    manifest_path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    summary = embed.embed_manifest(
        out, str(manifest_path), str(tmp_path / "emb"), batch_size=8, show_progress=False
    )
    vectors = np.load(tmp_path / "emb.npy")
    assert summary["ids"] == ["a", "b", "c"]
    assert vectors.shape == (3, 2 * 32)  # The title's half and the photo's (embed_dim 32).
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[2, 32:], 0.0)  # "c" has no photo.
    reasons = sorted(r["reason"] for r in summary["rejects"])
    assert reasons == ["corrupt_image", "malformed_line"]
    assert summary["num_input_listings"] == summary["num_embedded"] + summary["num_rejected"]


def test_safetensors_export_round_trips_with_flat_names(trained_workdir, tmp_path):
    from safetensors import safe_open  # pylint: disable=g-import-not-at-top

    msgpack_dir, safetensors_dir = str(tmp_path / "msgpack"), str(tmp_path / "safetensors")
    export.export_model(trained_workdir, msgpack_dir)
    info = export.export_model(trained_workdir, safetensors_dir, params_format="safetensors")
    assert info["format"] == "safetensors"
    assert sorted(os.listdir(safetensors_dir)) == [
        "config.json",
        "export_info.json",
        "params.safetensors",
        "tokenizer.model",
    ]
    _, params, _ = train_step.restore_trained_params(trained_workdir)
    # Any safetensors reader sees one tensor per parameter under its dot-joined tree path.
    with safe_open(os.path.join(safetensors_dir, "params.safetensors"), "numpy") as f:
        assert f.metadata() == {"item_jax_format": "1"}
        names = set(f.keys())
        np.testing.assert_array_equal(
            f.get_tensor("block_0.attention.query_kernel"),
            np.asarray(params["block_0"]["attention"]["query_kernel"]),
        )
    assert len(names) == len(jax.tree.leaves(params)) and "token_embedding.embedding" in names
    loaded = export.read_params(os.path.join(safetensors_dir, "params.safetensors"))
    jax.tree.map(np.testing.assert_array_equal, loaded, jax.tree.map(np.asarray, params))
    listings = ([None, None], ["red ceramic mug", "blue tote bag"])
    np.testing.assert_array_equal(
        item_jax.load_exported(safetensors_dir).embed(*listings),
        item_jax.load_exported(msgpack_dir).embed(*listings),
    )
    with pytest.raises(ValueError, match="--format"):
        export.export_model(trained_workdir, str(tmp_path / "x"), params_format="pickle")
