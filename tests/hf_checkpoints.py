"""Tiny random Hugging Face BERT and ViT checkpoints, made locally (no download).

Used by the interop tests; needs the test extras `torch` and `transformers`.
"""

import os
import re

import ml_collections

from item_jax.configs.defaults import default_config

# A BERT-style vocab.txt whose special tokens are not at item_jax's ids 0..4, so the id
# order is exercised.
SPECIAL = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = (
    SPECIAL
    + "red blue green mug cup bowl plate lamp chair table oz ml set of two large small".split()
    + ["##s", "##er", "1", "2", "##0", "!", ",", "&", "-"]
)
DIMS = dict(hidden=32, heads=4, layers=2, mlp=64, image_size=16, patch_size=4)


def vocab_of_titles(titles) -> list[str]:
    """SPECIAL, then every lower-cased word and punctuation mark of `titles`, in order."""
    words = []
    for title in titles:
        for word in re.findall(r"\w+|[^\w\s]", title.lower()):
            if word not in words:
                words.append(word)
    return SPECIAL + words


def write_bert(
    directory: str, seed: int = 0, with_mlm_head: bool = False, vocab=VOCAB, **dims
) -> str:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top

    dims = dict(DIMS, **dims)
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=dims["hidden"],
        num_hidden_layers=dims["layers"],
        num_attention_heads=dims["heads"],
        intermediate_size=dims["mlp"],
        max_position_embeddings=24,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
    )
    model_class = transformers.BertForMaskedLM if with_mlm_head else transformers.BertModel
    model = model_class(config).eval()
    with torch.no_grad():  # Non-trivial norms and biases, so that a swapped tensor shows.
        for name, parameter in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                parameter.add_(0.1 * torch.randn_like(parameter))
    model.save_pretrained(directory)
    with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    return directory


def write_vit(directory: str, seed: int = 1, **dims) -> str:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top

    dims = dict(DIMS, **dims)
    torch.manual_seed(seed)
    config = transformers.ViTConfig(
        image_size=dims["image_size"],
        patch_size=dims["patch_size"],
        hidden_size=dims["hidden"],
        num_hidden_layers=dims["layers"],
        num_attention_heads=dims["heads"],
        intermediate_size=dims["mlp"],
        hidden_act="gelu",
        layer_norm_eps=1e-12,
    )
    model = transformers.ViTModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "layernorm" in name or name.endswith("bias"):
                parameter.add_(0.1 * torch.randn_like(parameter))
    model.save_pretrained(directory)
    return directory


def model_config(
    block_norm: str,
    text_embedding_norm: bool,
    vocab_size: int = len(VOCAB),
    config: ml_collections.ConfigDict | None = None,
    **dims,
) -> ml_collections.ConfigDict:
    """An item_jax config (default: the defaults) with the checkpoints' dims and layout."""
    dims = dict(DIMS, **dims)
    config = config if config is not None else default_config()
    config.model.update(
        vocab_size=vocab_size,
        hidden_dim=dims["hidden"],
        num_heads=dims["heads"],
        num_layers=dims["layers"],
        mlp_dim=dims["mlp"],
        max_text_len=16,
        embed_dim=16,
        image_size=dims["image_size"],
        patch_size=dims["patch_size"],
        block_norm=block_norm,
        text_embedding_norm=text_embedding_norm,
        layer_norm_epsilon=1e-12,
        gelu="exact",
        patch_stem="linear",
    )  # ViT's patch embedding.
    return config
