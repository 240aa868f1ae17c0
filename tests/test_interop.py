"""BERT and ViT checkpoints in and out: item_jax computes what Hugging Face computes.

Tiny random models are built and saved locally (tests/hf_checkpoints.py); `torch` and
`transformers` are test extras (requirements-dev.txt), never needed by the package.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import hf_checkpoints

from item_jax import train_step
from item_jax.config_check import ConfigError
from item_jax.data import tokenizer, wordpiece
from item_jax.interop import bert, pretrained_init
from item_jax.model import model_from_config

TOLERANCE = 2e-5


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return hf_checkpoints.write_bert(str(tmp_path_factory.mktemp("bert")), with_mlm_head=True)


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    return hf_checkpoints.write_vit(str(tmp_path_factory.mktemp("vit")))


def _imported(config):
    pretrained_init.check_init(config, None)
    model = model_from_config(config.model)
    params = jax.tree.map(np.asarray, train_step.initial_params(model, 0))
    params, report = pretrained_init.apply_init(params, config)
    return model, params, report


def _bert_ids_to_item_ids(bert_ids):
    order = wordpiece.item_order(hf_checkpoints.VOCAB)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return inverse[bert_ids]


# [CLS] red mug ##s [SEP] <pad>..., and a full row; BERT ids of hf_checkpoints.VOCAB.
BERT_IDS = np.array([[4, 7, 10, 23, 5, 0, 0, 0], [4, 8, 9, 11, 12, 13, 14, 5]])


@pytest.mark.slow
def test_imported_bert_gives_hugging_face_hidden_states_and_mlm_logits(bert_dir):
    config = hf_checkpoints.model_config("post", True)
    config.init.text_from = bert_dir
    model, params, report = _imported(config)
    mask = (BERT_IDS != 0).astype(np.int32)
    hf_model = transformers.BertForMaskedLM.from_pretrained(bert_dir).eval()
    with torch.no_grad():
        hf_out = hf_model(
            input_ids=torch.tensor(BERT_IDS),
            attention_mask=torch.tensor(mask),
            output_hidden_states=True,
        )
    want_states = hf_out.hidden_states[-1].numpy()
    out = model.apply(
        {"params": params},
        jnp.asarray(_bert_ids_to_item_ids(BERT_IDS)),
        jnp.asarray(mask),
        None,
        jnp.zeros(2, jnp.int32),
        method=model.encode,
    )
    states = np.asarray(out["sequence_states"])
    np.testing.assert_allclose(states, want_states, atol=TOLERANCE)
    # The MLM head too: logits over item_jax ids, read back in BERT's order.
    logits = np.asarray(
        model.apply({"params": params}, out["sequence_states"], method=model.mlm_logits)
    )
    order = wordpiece.item_order(hf_checkpoints.VOCAB)
    bert_order_logits = np.empty_like(logits)
    bert_order_logits[..., order] = logits
    np.testing.assert_allclose(bert_order_logits, hf_out.logits.numpy(), atol=1e-4)
    assert "token_embedding.embedding" in report["from"]["text"]["params"]
    assert "block_1.attention.query_kernel" in report["from"]["text"]["params"]
    assert "itm_head.kernel" in report["random"]
    assert "patch_embedding.kernel" in report["random"]
    assert any("key.bias" in name for name in report["left_out"]["text"])


def test_imported_vit_gives_hugging_face_hidden_states(vit_dir):
    config = hf_checkpoints.model_config("pre", False)
    config.init.vision_from = vit_dir
    model, params, report = _imported(config)
    images = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    hf_model = transformers.ViTModel.from_pretrained(vit_dir, add_pooling_layer=False).eval()
    with torch.no_grad():
        want = hf_model(pixel_values=torch.tensor(images.transpose(0, 3, 1, 2))).last_hidden_state
    # The image-only sequence: [CLS] (ViT's class token) and the patches.
    out = model.apply(
        {"params": params},
        jnp.full((2, 1), tokenizer.CLS_ID),
        jnp.ones((2, 1)),
        jnp.asarray(images),
        jnp.ones(2, jnp.int32),
        method=model.encode,
    )
    np.testing.assert_allclose(np.asarray(out["sequence_states"]), want.numpy(), atol=TOLERANCE)
    assert "final_norm.scale" in report["from"]["vision"]["params"]
    assert "mlm_transform.kernel" in report["random"]


def test_bert_layout_export_loads_in_hugging_face_and_round_trips(bert_dir, tmp_path):
    # A random item_jax model in BERT layout, its text side written as a BertModel directory.
    config = hf_checkpoints.model_config("post", True)
    model = model_from_config(config.model)
    params = jax.tree.map(np.asarray, train_step.initial_params(model, 3))
    tokens = wordpiece.WordPieceTokenizer(hf_checkpoints.VOCAB, lowercase=True)
    out_dir = str(tmp_path / "exported")
    bert.write_bert_directory(out_dir, params, config.model, tokens)
    hf_model = transformers.BertModel.from_pretrained(out_dir, add_pooling_layer=False).eval()
    hf_tokenizer = transformers.BertTokenizer.from_pretrained(out_dir)
    titles = ["Red mugs, 12 oz!", "large blue bowl set of two"]
    batch = hf_tokenizer(titles, padding=True, return_tensors="np")
    with torch.no_grad():
        want = hf_model(
            input_ids=torch.tensor(batch["input_ids"]),
            attention_mask=torch.tensor(batch["attention_mask"]),
        ).last_hidden_state
    # item_jax's own tokenizer gives the same pieces, in its ids.
    pieces = tokens.encode_titles(titles)
    expected_ids = _bert_ids_to_item_ids(batch["input_ids"])
    for row, title_pieces in enumerate(pieces):
        assert expected_ids[row, 1 : 1 + len(title_pieces)].tolist() == title_pieces
    out = model.apply(
        {"params": params},
        jnp.asarray(expected_ids),
        jnp.asarray(batch["attention_mask"]),
        None,
        jnp.zeros(2, jnp.int32),
        method=model.encode,
    )
    np.testing.assert_allclose(np.asarray(out["sequence_states"]), want.numpy(), atol=TOLERANCE)
    # Importing the export gives back the same text side.
    config.init.text_from = out_dir
    _, reimported, _ = _imported(config)
    for name in ("text_position", "modality_type"):
        np.testing.assert_allclose(reimported[name], params[name], atol=1e-7)
    np.testing.assert_allclose(
        reimported["token_embedding"]["embedding"],
        params["token_embedding"]["embedding"],
        atol=1e-7,
    )
    np.testing.assert_allclose(
        reimported["block_0"]["attention"]["value_kernel"],
        params["block_0"]["attention"]["value_kernel"],
        atol=1e-7,
    )


def test_export_refuses_a_model_not_in_bert_layout():
    config = hf_checkpoints.model_config("pre", False)
    params = jax.tree.map(np.asarray, train_step.initial_params(model_from_config(config.model), 0))
    tokens = wordpiece.WordPieceTokenizer(hf_checkpoints.VOCAB, lowercase=True)
    with pytest.raises(ValueError, match="block_norm.*text_embedding_norm"):
        bert.export_text(params, config.model, tokens.bert_to_item_ids)


def test_mismatched_config_fails_naming_every_field(bert_dir, vit_dir):
    config = hf_checkpoints.model_config("pre", False)
    config.model.hidden_dim = 64
    config.init.text_from = bert_dir
    with pytest.raises(ConfigError) as raised:
        pretrained_init.check_init(config, None)
    message = str(raised.value)
    for field in (
        "config.model.hidden_dim",
        "config.model.block_norm",
        "config.model.text_embedding_norm",
    ):
        assert field in message
    config = hf_checkpoints.model_config("pre", False, patch_size=8)
    config.init.vision_from = vit_dir
    with pytest.raises(ConfigError, match="config.model.patch_size: 8 here, 4 in"):
        pretrained_init.check_init(config, None)
    config.init.text_from = bert_dir
    with pytest.raises(ConfigError, match="config.init.encoder_from"):
        pretrained_init.check_init(config, None)


def test_checkpoint_directory_errors(tmp_path, bert_dir):
    config = hf_checkpoints.model_config("post", True)
    config.init.text_from = str(tmp_path / "absent")
    with pytest.raises(ConfigError, match="no config.json"):
        pretrained_init.check_init(config, None)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for name in ("config.json", "vocab.txt"):
        (pickled / name).write_bytes(open(os.path.join(bert_dir, name), "rb").read())
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    config.init.text_from = str(pickled)
    model = model_from_config(config.model)
    params = jax.tree.map(np.asarray, train_step.initial_params(model, 0))
    with pytest.raises(ValueError, match="no pickle"):
        pretrained_init.apply_init(params, config)
