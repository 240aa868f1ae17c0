"""ViT (Hugging Face layout) -> item_jax: the patch embedding and, optionally, the blocks.

`import_vision` fills, from a ViT checkpoint directory's tensors:
  patch_embedding   <- embeddings.patch_embeddings.projection (a P x P stride-P conv, as the
                       [P*P*3, D] kernel of item_jax's row-major (p1 p2 c) patches)
  image_position    <- embeddings.position_embeddings[1:]
  block_{i}         <- encoder.layer.{i} (when the blocks come from the ViT; pre-LN)
  final_norm        <- layernorm (with the blocks)
  patch_mask_vector <- embeddings.mask_token (when the checkpoint has one)
When the text side is not imported as well, ViT's class token becomes item_jax's `[CLS]`
(its token row plus text position 0) and the modality-type embeddings are zero, so the
encoder on an image-only input computes the ViT's hidden states (tests/test_interop.py).
Left out: ViT's pooler. Pixels are in [-1, 1], as a ViT with image mean and std 0.5 sees
them; `pixel_normalization_note` says when a checkpoint expects something else.
"""

import json
import os

import numpy as np

from item_jax.data import tokenizer
from item_jax.interop import blocks

PREFIXES = ("vit",)
BLOCK = blocks.BlockNames(
    query="encoder.layer.{i}.attention.attention.query",
    key="encoder.layer.{i}.attention.attention.key",
    value="encoder.layer.{i}.attention.attention.value",
    attention_out="encoder.layer.{i}.attention.output.dense",
    attention_norm="encoder.layer.{i}.layernorm_before",
    mlp_in="encoder.layer.{i}.intermediate.dense",
    mlp_out="encoder.layer.{i}.output.dense",
    mlp_norm="encoder.layer.{i}.layernorm_after",
)


def config_problems(hf_config: dict, model_config, source: str, with_blocks: bool) -> list[str]:
    """What in `config.model` does not match the ViT; each names the field to set."""
    problems = []

    def expect(field, wanted, found):
        problems.extend(blocks.mismatch(field, wanted, found, source))

    expect("hidden_dim", hf_config["hidden_size"], model_config.hidden_dim)
    expect("patch_size", hf_config["patch_size"], model_config.patch_size)
    expect("image_size", hf_config["image_size"], model_config.image_size)
    # ViT's patch embedding is one linear map per patch: it has no place in a conv stem.
    expect("patch_stem", "linear", model_config.patch_stem)
    if hf_config.get("num_channels", 3) != 3:
        problems.append(
            f"{source}: num_channels {hf_config['num_channels']}; item_jax images are RGB"
        )
    if with_blocks:
        expect("num_heads", hf_config["num_attention_heads"], model_config.num_heads)
        expect("num_layers", hf_config["num_hidden_layers"], model_config.num_layers)
        expect("mlp_dim", hf_config["intermediate_size"], model_config.mlp_dim)
        expect("block_norm", "pre", model_config.block_norm)
        expect(
            "layer_norm_epsilon",
            float(hf_config.get("layer_norm_eps", 1e-12)),
            float(model_config.layer_norm_epsilon),
        )
        problems += blocks.gelu_problems(hf_config, model_config, source)
    return problems


def import_vision(
    hf_config: dict,
    tensors: dict,
    initial: dict,
    model_config,
    with_blocks: bool,
    with_class_token: bool,
) -> tuple[dict, set]:
    """(item_jax params filled from the ViT, the ViT tensor names used)."""
    used = set()
    take = lambda name: (used.add(name), tensors[name])[1]
    conv = take("embeddings.patch_embeddings.projection.weight")  # [D, 3, P, P]
    width, channels, patch, _ = conv.shape
    positions = take("embeddings.position_embeddings")[0]  # [1 + N, D]
    params = {
        "patch_embedding": {
            "kernel": conv.transpose(2, 3, 1, 0).reshape(patch * patch * channels, width),
            "bias": take("embeddings.patch_embeddings.projection.bias"),
        },
        "image_position": positions[1:],
    }
    if "embeddings.mask_token" in tensors:
        params["patch_mask_vector"] = take("embeddings.mask_token").reshape(width)
    if with_blocks:
        for index in range(model_config.num_layers):
            params[f"block_{index}"] = blocks.import_block(
                tensors, BLOCK, index, model_config.num_heads, used
            )
        params["final_norm"] = blocks.layer_norm(tensors, "layernorm", used)
    if with_class_token:
        table = np.array(initial["token_embedding"]["embedding"], np.float32)
        table[tokenizer.CLS_ID] = take("embeddings.cls_token").reshape(width)
        text_position = np.array(initial["text_position"], np.float32)
        text_position[0] = positions[0]
        params["token_embedding"] = {"embedding": table}
        params["text_position"] = text_position
        params["modality_type"] = np.zeros_like(np.asarray(initial["modality_type"], np.float32))
    return params, used


def pixel_normalization_note(directory: str) -> str | None:
    """A warning when preprocessor_config.json normalises pixels other than to [-1, 1]."""
    path = os.path.join(directory, "preprocessor_config.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        processor = json.load(f)
    if not processor.get("do_normalize", True):
        return f"{path}: the ViT saw unnormalised pixels in [0, 1]; item_jax feeds [-1, 1]."
    mean, std = processor.get("image_mean", [0.5] * 3), processor.get("image_std", [0.5] * 3)
    if not (np.allclose(mean, 0.5) and np.allclose(std, 0.5)):
        return (
            f"{path}: the ViT saw pixels normalised with mean {mean} and std {std}; item_jax "
            "feeds (x - 0.5) / 0.5, so its first layers see shifted inputs until trained."
        )
    return None
