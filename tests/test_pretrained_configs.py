"""The shipped `base.py` variants match the published BERT-base and ViT-B/16 configs.

The config.json fields below are those of bert-base-uncased and
vit-base-patch16-224-in21k as Hugging Face publishes them; `check_init` reads only
config.json and vocab.txt, so no weights are needed.
"""

import json

import pytest

from item_jax.config_check import ConfigError
from item_jax.configs import load_config
from item_jax.interop import pretrained_init

BERT_BASE = dict(
    model_type="bert",
    vocab_size=30522,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    max_position_embeddings=512,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
    position_embedding_type="absolute",
)
VIT_BASE = dict(
    model_type="vit",
    image_size=224,
    patch_size=16,
    num_channels=3,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    layer_norm_eps=1e-12,
    qkv_bias=True,
)


@pytest.fixture
def checkpoint_dirs(tmp_path):
    bert_dir, vit_dir = tmp_path / "bert", tmp_path / "vit"
    bert_dir.mkdir()
    vit_dir.mkdir()
    (bert_dir / "config.json").write_text(json.dumps(BERT_BASE))
    special = (
        ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    words = [f"word{i}" for i in range(BERT_BASE["vocab_size"] - len(special))]
    (bert_dir / "vocab.txt").write_text("\n".join(special + words) + "\n")
    (vit_dir / "config.json").write_text(json.dumps(VIT_BASE))
    return str(bert_dir), str(vit_dir)


@pytest.mark.parametrize(
    "variant,text,vision",
    [("bert", True, False), ("bert", True, True), ("vit", False, True), ("vilt", True, True)],
)
def test_base_variants_match_the_published_checkpoints(checkpoint_dirs, variant, text, vision):
    config = load_config(f"base.py:{variant}")
    config.init.text_from = checkpoint_dirs[0] if text else ""
    config.init.vision_from = checkpoint_dirs[1] if vision else ""
    pretrained_init.check_init(config, None)


def test_plain_base_does_not_match_bert(checkpoint_dirs):
    config = load_config("base.py")
    config.init.text_from = checkpoint_dirs[0]
    with pytest.raises(ConfigError) as raised:
        pretrained_init.check_init(config, None)
    for field in ("vocab_size", "block_norm", "gelu", "layer_norm_epsilon", "text_embedding_norm"):
        assert f"config.model.{field}" in str(raised.value)


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown variant"):
        load_config("base.py:bret")
