"""BERT (Hugging Face layout) <-> item_jax: the text side and, optionally, the blocks.

Import (`import_text`) fills, from a BERT checkpoint directory's tensors:
  token_embedding        <- embeddings.word_embeddings (rows moved to item_jax's id order,
                            `item_jax/data/wordpiece.py`)
  text_position          <- embeddings.position_embeddings (the first max_text_len rows)
  modality_type          <- embeddings.token_type_embeddings (type 0 text, type 1 image)
  text_embedding_norm    <- embeddings.LayerNorm
  block_{i}              <- encoder.layer.{i} (when the blocks come from BERT; post-LN)
  mlm_transform, mlm_norm, vocab_bias <- cls.predictions.* (when the checkpoint has them)
It leaves out BERT's pooler (item_jax pools with `embedding_projection`) and its key
biases (`blocks.py`). `export_text` writes the same names back: a directory that
`transformers.BertModel.from_pretrained` loads and that computes, on a title, the hidden
states item_jax computes on it (tests/test_interop.py).
"""

import json
import os

import numpy as np

from item_jax.interop import blocks, hf_files

PREFIXES = ("bert",)
BLOCK = blocks.BlockNames(
    query="encoder.layer.{i}.attention.self.query",
    key="encoder.layer.{i}.attention.self.key",
    value="encoder.layer.{i}.attention.self.value",
    attention_out="encoder.layer.{i}.attention.output.dense",
    attention_norm="encoder.layer.{i}.attention.output.LayerNorm",
    mlp_in="encoder.layer.{i}.intermediate.dense",
    mlp_out="encoder.layer.{i}.output.dense",
    mlp_norm="encoder.layer.{i}.output.LayerNorm",
)
GELU_TO_HIDDEN_ACT = {"exact": "gelu", "tanh": "gelu_pytorch_tanh"}


def config_problems(
    hf_config: dict, model_config, source: str, with_blocks: bool, vocab_size: int
) -> list[str]:
    """What in `config.model` does not match the BERT; each names the field to set."""
    problems = []

    def expect(field, wanted, found):
        problems.extend(blocks.mismatch(field, wanted, found, source))

    expect("hidden_dim", hf_config["hidden_size"], model_config.hidden_dim)
    expect("num_heads", hf_config["num_attention_heads"], model_config.num_heads)
    expect("vocab_size", hf_config["vocab_size"], model_config.vocab_size)
    if vocab_size != hf_config["vocab_size"]:
        problems.append(
            f"{source}: vocab.txt has {vocab_size} tokens, config.json says "
            f"vocab_size {hf_config['vocab_size']}"
        )
    if model_config.max_text_len > hf_config["max_position_embeddings"]:
        problems.append(
            f"config.model.max_text_len: {model_config.max_text_len} here, at most "
            f"{hf_config['max_position_embeddings']} in {source}"
        )
    expect("text_embedding_norm", True, bool(model_config.text_embedding_norm))
    expect(
        "layer_norm_epsilon",
        float(hf_config.get("layer_norm_eps", 1e-12)),
        float(model_config.layer_norm_epsilon),
    )
    if hf_config.get("position_embedding_type", "absolute") != "absolute":
        problems.append(
            f"{source}: position_embedding_type "
            f"{hf_config['position_embedding_type']!r}; item_jax has absolute ones"
        )
    if with_blocks:
        expect("num_layers", hf_config["num_hidden_layers"], model_config.num_layers)
        expect("mlp_dim", hf_config["intermediate_size"], model_config.mlp_dim)
        expect("block_norm", "post", model_config.block_norm)
        problems += blocks.gelu_problems(hf_config, model_config, source)
    return problems


def import_text(
    hf_config: dict,
    tensors: dict,
    initial: dict,
    model_config,
    item_to_bert_ids: np.ndarray,
    with_blocks: bool,
) -> tuple[dict, set]:
    """(item_jax params filled from the BERT, the BERT tensor names used)."""
    used = set()
    take = lambda name: (used.add(name), tensors[name])[1]
    params = {
        "token_embedding": {
            "embedding": take("embeddings.word_embeddings.weight")[item_to_bert_ids]
        },
        "text_position": take("embeddings.position_embeddings.weight")[: model_config.max_text_len],
        "text_embedding_norm": blocks.layer_norm(tensors, "embeddings.LayerNorm", used),
    }
    types = take("embeddings.token_type_embeddings.weight")
    modality_type = np.array(initial["modality_type"], np.float32)
    modality_type[: min(2, len(types))] = types[:2]
    params["modality_type"] = modality_type
    if with_blocks:
        for index in range(model_config.num_layers):
            params[f"block_{index}"] = blocks.import_block(
                tensors, BLOCK, index, model_config.num_heads, used
            )
    if "cls.predictions.transform.dense.weight" in tensors:
        params["mlm_transform"] = blocks.dense(tensors, "cls.predictions.transform.dense", used)
        params["mlm_norm"] = blocks.layer_norm(tensors, "cls.predictions.transform.LayerNorm", used)
        params["vocab_bias"] = take("cls.predictions.bias")[item_to_bert_ids]
    return params, used


def export_text(params: dict, model_config, bert_to_item_ids: np.ndarray) -> tuple[dict, dict]:
    """(config.json, tensors) of a BertModel holding item_jax's text side and blocks."""
    problems = []
    if model_config.block_norm != "post":
        problems.append(f"config.model.block_norm is {model_config.block_norm!r}, BERT's is 'post'")
    if not model_config.text_embedding_norm:
        problems.append(
            "config.model.text_embedding_norm is False, BERT has the embedding LayerNorm"
        )
    if problems:
        raise ValueError(
            "The model is not in BERT layout, so no BertModel computes what it "
            "does: " + "; ".join(problems) + "."
        )
    array = lambda value: np.asarray(value, np.float32)
    vocab_size = len(bert_to_item_ids)
    tensors = {
        "embeddings.word_embeddings.weight": array(params["token_embedding"]["embedding"])[
            :vocab_size
        ][bert_to_item_ids],
        "embeddings.position_embeddings.weight": array(params["text_position"]),
        "embeddings.token_type_embeddings.weight": array(params["modality_type"]),
        "embeddings.LayerNorm.weight": array(params["text_embedding_norm"]["scale"]),
        "embeddings.LayerNorm.bias": array(params["text_embedding_norm"]["bias"]),
    }
    for index in range(model_config.num_layers):
        tensors.update(blocks.export_block(params[f"block_{index}"], BLOCK, index))
    hf_config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": model_config.hidden_dim,
        "num_hidden_layers": model_config.num_layers,
        "num_attention_heads": model_config.num_heads,
        "intermediate_size": model_config.mlp_dim,
        "hidden_act": GELU_TO_HIDDEN_ACT[model_config.gelu],
        "max_position_embeddings": model_config.max_text_len,
        "type_vocab_size": 2,
        "layer_norm_eps": float(model_config.layer_norm_epsilon),
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "position_embedding_type": "absolute",
        "pad_token_id": int(np.flatnonzero(bert_to_item_ids == 0)[0]),  # item_jax's PAD_ID 0.
    }
    return hf_config, tensors


def write_bert_directory(out_dir: str, params: dict, model_config, wordpiece_tokenizer) -> dict:
    """A Hugging Face BERT directory (config.json, model.safetensors, vocab.txt,
    tokenizer_config.json) of the model's text side; returns the config.json dict."""
    hf_config, tensors = export_text(params, model_config, wordpiece_tokenizer.bert_to_item_ids)
    hf_files.write_checkpoint(out_dir, hf_config, tensors)
    with open(os.path.join(out_dir, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(wordpiece_tokenizer.vocab) + "\n")
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "tokenizer_class": "BertTokenizer",
                "do_lower_case": wordpiece_tokenizer.lowercase,
                "model_max_length": model_config.max_text_len,
            },
            f,
            indent=2,
        )
    return hf_config
