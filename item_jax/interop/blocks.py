"""Transformer pieces between PyTorch `nn.Linear`/`nn.LayerNorm` tensors and item_jax params.

A Linear's weight is [out, in]; a flax kernel is [in, out]. item_jax's attention keeps its
projections per head ([D, H, K] and [H, K, D]) and has no key bias: a key bias adds the
same logit to every key of a query, which softmax ignores, so it is left out on import
and written as zeros on export, with no change to what the model computes.

Each architecture (`bert.py`, `vit.py`) names its tensors with a `BlockNames` table; the
functions here do the reshaping once for both.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class BlockNames:
    """Tensor name prefixes of one encoder layer, with `{i}` for the layer index."""

    query: str
    key: str
    value: str
    attention_out: str
    attention_norm: str  # item_jax's `attention_norm`: post-LN after attention, or pre-LN.
    mlp_in: str
    mlp_out: str
    mlp_norm: str


# A checkpoint's hidden_act -> item_jax's model.gelu (BERT and ViT name them alike).
HIDDEN_ACTS = {
    "gelu": "exact",
    "gelu_python": "exact",
    "gelu_new": "tanh",
    "gelu_pytorch_tanh": "tanh",
    "gelu_fast": "tanh",
}


def mismatch(field: str, wanted, found, source: str) -> list[str]:
    """[the problem] when config.model.`field` is `found` but the checkpoint has `wanted`."""
    if found == wanted:
        return []
    return [f"config.model.{field}: {found!r} here, {wanted!r} in {source}"]


def gelu_problems(hf_config: dict, model_config, source: str) -> list[str]:
    act = hf_config.get("hidden_act", "gelu")
    if act not in HIDDEN_ACTS:
        return [f"{source}: hidden_act {act!r} is not a GELU item_jax has ({sorted(HIDDEN_ACTS)})"]
    return mismatch("gelu", HIDDEN_ACTS[act], model_config.gelu, source)


def dense(tensors: dict, name: str, used: set) -> dict:
    used.update({f"{name}.weight", f"{name}.bias"})
    return {"kernel": tensors[f"{name}.weight"].T, "bias": tensors[f"{name}.bias"]}


def layer_norm(tensors: dict, name: str, used: set) -> dict:
    # Checkpoints from before 2019 name LayerNorm's parameters gamma and beta.
    scale = f"{name}.weight" if f"{name}.weight" in tensors else f"{name}.gamma"
    bias = f"{name}.bias" if f"{name}.bias" in tensors else f"{name}.beta"
    used.update({scale, bias})
    return {"scale": tensors[scale], "bias": tensors[bias]}


def import_block(tensors: dict, names: BlockNames, index: int, num_heads: int, used: set) -> dict:
    """One item_jax `block_{index}` from a layer's tensors."""
    name = lambda template: template.format(i=index)
    width = tensors[name(names.query) + ".weight"].shape[1]
    head_dim = width // num_heads

    def projection_kernel(prefix):
        used.add(prefix + ".weight")
        return tensors[prefix + ".weight"].T.reshape(width, num_heads, head_dim)

    def projection_bias(prefix):
        used.add(prefix + ".bias")
        bias = tensors.get(prefix + ".bias")
        if bias is None:  # A ViT without qkv_bias.
            return np.zeros((num_heads, head_dim), np.float32)
        return bias.reshape(num_heads, head_dim)

    # The key bias stays out of `used`: it is left out (softmax ignores it, module docstring).
    out = dense(tensors, name(names.attention_out), used)
    attention = {
        "query_kernel": projection_kernel(name(names.query)),
        "query_bias": projection_bias(name(names.query)),
        "key_kernel": projection_kernel(name(names.key)),
        "value_kernel": projection_kernel(name(names.value)),
        "value_bias": projection_bias(name(names.value)),
        "out_kernel": out["kernel"].reshape(num_heads, head_dim, width),
        "out_bias": out["bias"],
    }
    return {
        "attention": attention,
        "attention_norm": layer_norm(tensors, name(names.attention_norm), used),
        "mlp_in": dense(tensors, name(names.mlp_in), used),
        "mlp_out": dense(tensors, name(names.mlp_out), used),
        "mlp_norm": layer_norm(tensors, name(names.mlp_norm), used),
    }


def export_block(block: dict, names: BlockNames, index: int) -> dict[str, np.ndarray]:
    """The tensors of one layer from item_jax's `block_{index}` (key bias zeros)."""
    name = lambda template: template.format(i=index)
    attention = {key: np.asarray(value, np.float32) for key, value in block["attention"].items()}
    width, num_heads, head_dim = attention["query_kernel"].shape
    flat = lambda kernel: kernel.reshape(width, num_heads * head_dim).T
    tensors = {
        name(names.query) + ".weight": flat(attention["query_kernel"]),
        name(names.query) + ".bias": attention["query_bias"].reshape(-1),
        name(names.key) + ".weight": flat(attention["key_kernel"]),
        name(names.key) + ".bias": np.zeros((width,), np.float32),
        name(names.value) + ".weight": flat(attention["value_kernel"]),
        name(names.value) + ".bias": attention["value_bias"].reshape(-1),
        name(names.attention_out) + ".weight": attention["out_kernel"]
        .reshape(num_heads * head_dim, width)
        .T,
        name(names.attention_out) + ".bias": attention["out_bias"],
    }
    for prefix, key in ((names.mlp_in, "mlp_in"), (names.mlp_out, "mlp_out")):
        tensors[name(prefix) + ".weight"] = np.asarray(block[key]["kernel"], np.float32).T
        tensors[name(prefix) + ".bias"] = np.asarray(block[key]["bias"], np.float32)
    for prefix, key in ((names.attention_norm, "attention_norm"), (names.mlp_norm, "mlp_norm")):
        tensors[name(prefix) + ".weight"] = np.asarray(block[key]["scale"], np.float32)
        tensors[name(prefix) + ".bias"] = np.asarray(block[key]["bias"], np.float32)
    return tensors
