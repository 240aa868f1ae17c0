"""A run started from a BERT and a ViT: start-up checks, what it loads and says, export.

Needs the test extras `torch` and `transformers` (tiny random checkpoints, made here).
"""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import hf_checkpoints
from conftest import small_config

from item_jax import export, train_loop, train_step
from item_jax.catalogs import synthetic
from item_jax.config_check import ConfigError
from item_jax.data import (
    convert,
    dataset_info,
    manifest,
    tokenizer,
)
from item_jax.interop import hf_files, pretrained_init
from item_jax.model import model_from_config

DIMS = dict(hidden=64, heads=4, layers=2, mlp=128, image_size=32, patch_size=8)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """(WordPiece shards, BERT dir, ViT dir, vocab) for a small synthetic catalog."""
    root = tmp_path_factory.mktemp("pretrained")
    manifest_path = synthetic.generate_catalog(
        root / "catalog", num_products=12, listings_per_product=3, image_size=48
    )
    titles = [listing.title for listing in manifest.read_manifest(str(manifest_path)).listings]
    vocab = hf_checkpoints.vocab_of_titles(titles)
    bert_dir = hf_checkpoints.write_bert(str(root / "bert"), vocab=vocab, **DIMS)
    vit_dir = hf_checkpoints.write_vit(str(root / "vit"), **DIMS)
    shards = str(root / "shards")
    convert.convert_catalog(
        str(manifest_path),
        shards,
        image_size=32,
        num_workers=1,
        wordpiece_vocab=os.path.join(bert_dir, "vocab.txt"),
        show_progress=False,
    )
    return shards, bert_dir, vit_dir, vocab


def _config(shards, bert_dir, vit_dir, vocab, **overrides):
    config = hf_checkpoints.model_config(
        "post", True, vocab_size=len(vocab), config=small_config(total_steps=3), **DIMS
    )
    config.data.dir = shards
    config.init.update(text_from=bert_dir, vision_from=vit_dir, encoder_from="text")
    config.update_from_flattened_dict(overrides)
    return config


def test_wordpiece_shards_hold_the_bert_tokenizers_pieces(pretrained):
    shards, bert_dir, _, vocab = pretrained
    info = dataset_info.load_dataset_info(shards)
    assert info["tokenizer"]["kind"] == "wordpiece"
    assert info["tokenizer"]["vocab_size"] == len(vocab)
    stored = tokenizer.load_tokenizer(os.path.join(shards, dataset_info.tokenizer_file(info)))
    hf_tokenizer = transformers.BertTokenizer(
        os.path.join(bert_dir, "vocab.txt"), do_lower_case=True
    )
    title = "Harbor & Oak: Ceramic MUG, 12oz"
    bert_ids = hf_tokenizer(title, add_special_tokens=False)["input_ids"]
    assert stored.encode_titles([title])[0] == stored.bert_to_item_ids[bert_ids].tolist()
    assert stored.bert_to_item_ids[hf_tokenizer.cls_token_id] == tokenizer.CLS_ID
    assert stored.bert_to_item_ids[hf_tokenizer.mask_token_id] == tokenizer.MASK_ID


@pytest.mark.slow
def test_run_from_bert_and_vit_trains_and_reports_what_it_loaded(pretrained, tmp_path):
    shards, bert_dir, vit_dir, vocab = pretrained
    config = _config(shards, bert_dir, vit_dir, vocab)
    workdir = str(tmp_path / "run")
    metrics = train_loop.train_and_evaluate(config, workdir)
    assert np.isfinite(metrics["loss"])
    with open(os.path.join(workdir, "init_report.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert "block_0.attention.query_kernel" in report["from"]["text"]["params"]
    assert "patch_embedding.kernel" in report["from"]["vision"]["params"]
    assert "block_0.attention.query_kernel" not in report["from"]["vision"]["params"]
    assert "itm_head.kernel" in report["random"]
    # Three small steps move the imported weights only a little: they were loaded.
    _, params, _ = train_step.restore_trained_params(workdir)
    _, bert_tensors = hf_files.read_checkpoint(bert_dir)
    stored = tokenizer.load_tokenizer(os.path.join(shards, "wordpiece.json"))
    bert_table = bert_tensors["embeddings.word_embeddings.weight"][stored.item_to_bert_ids]
    trained_table = np.asarray(params["token_embedding"]["embedding"])
    assert np.abs(trained_table - bert_table).max() < 0.05
    assert np.abs(bert_table).max() > 0.05
    assert np.abs(trained_table - bert_table).max() > 0  # ...and trained from there.

    # Its text side, exported in BERT layout, loads in Hugging Face and computes the same.
    out_dir = str(tmp_path / "hf_bert")
    export.export_model(workdir, out_dir, params_format="hf_bert")
    hf_model = transformers.BertModel.from_pretrained(out_dir, add_pooling_layer=False).eval()
    hf_tokenizer = transformers.BertTokenizer.from_pretrained(out_dir)
    batch = hf_tokenizer(["blue ceramic mug"], return_tensors="np")
    with torch.no_grad():
        want = hf_model(input_ids=torch.tensor(batch["input_ids"])).last_hidden_state.numpy()
    model = model_from_config(config.model)
    out = model.apply(
        {"params": params},
        jnp.asarray(stored.bert_to_item_ids[batch["input_ids"]]),
        jnp.asarray(batch["attention_mask"]),
        None,
        jnp.zeros(1, jnp.int32),
        method=model.encode,
    )
    np.testing.assert_allclose(np.asarray(out["sequence_states"]), want, atol=1e-4)

    # A rerun resumes from the checkpoint and does not import again.
    os.remove(os.path.join(workdir, "init_report.json"))
    train_loop.train_and_evaluate(config, workdir)
    assert not os.path.exists(os.path.join(workdir, "init_report.json"))


def test_mismatches_fail_at_start_up(pretrained, tmp_path, catalog_shards):
    shards, bert_dir, vit_dir, vocab = pretrained
    with pytest.raises(ConfigError, match="config.model.mlp_dim: 256 here, 128 in"):
        train_loop.train_and_evaluate(
            _config(shards, bert_dir, vit_dir, vocab, **{"model.mlp_dim": 256}), str(tmp_path / "a")
        )
    with pytest.raises(ConfigError, match="config.model.block_norm: 'post' here, 'pre' in"):
        train_loop.train_and_evaluate(
            _config(shards, bert_dir, vit_dir, vocab, **{"init.encoder_from": "vision"}),
            str(tmp_path / "b"),
        )
    # Shards tokenized with SentencePiece cannot start from a BERT's embeddings.
    with pytest.raises(ConfigError, match="tokenized with sentencepiece"):
        pretrained_init.check_init(
            _config(catalog_shards, bert_dir, vit_dir, vocab),
            dataset_info.load_dataset_info(catalog_shards),
            catalog_shards,
        )
    # Nothing was trained or saved before the failure.
    assert not os.listdir(tmp_path / "a" / "checkpoints")
    assert not os.path.exists(tmp_path / "a" / "metrics.jsonl")
