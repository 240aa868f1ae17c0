"""Hugging Face checkpoint directories on disk: `config.json` plus safetensors, no pickle.

`read_checkpoint(DIR)` returns the config and the tensors (float32 numpy, names without a
task model's prefix such as `bert.` or `vit.`); `write_checkpoint` writes a directory
that `transformers`' `from_pretrained` loads. A directory holding only a pickled
`pytorch_model.bin` is refused: item_jax reads no pickle.
"""

import json
import os

import numpy as np

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
PICKLED_WEIGHTS = ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")


def read_checkpoint(directory: str, prefixes: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """(config.json as a dict, {tensor name: float32 array}) of a checkpoint directory.

    A leading `prefix.` (one of `prefixes`, e.g. "bert" for BertForPreTraining) is removed
    from the tensor names.
    """
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"{directory!r} is not a directory (a Hugging Face checkpoint "
            f"directory with {CONFIG_FILE} and {WEIGHTS_FILE})."
        )
    config_path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise FileNotFoundError(
            f"{config_path} is missing: {directory!r} is not a Hugging Face checkpoint directory."
        )
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    tensors = {}
    for path in _weight_files(directory):
        from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

        try:
            loaded = load_file(path)
        except (TypeError, ValueError):  # bfloat16 has no numpy dtype: read through flax.
            from safetensors.flax import load_file as load_flax  # pylint: disable=g-import-not-at-top

            loaded = load_flax(path)
        tensors.update({name: np.asarray(value, np.float32) for name, value in loaded.items()})
    stripped = {}
    for name, value in tensors.items():
        for prefix in prefixes:
            if name.startswith(prefix + "."):
                name = name[len(prefix) + 1 :]
                break
        stripped[name] = value
    return config, stripped


def _weight_files(directory: str) -> list[str]:
    index_path = os.path.join(directory, WEIGHTS_INDEX_FILE)
    if os.path.isfile(index_path):
        with open(index_path, encoding="utf-8") as f:
            names = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(directory, name) for name in names]
    path = os.path.join(directory, WEIGHTS_FILE)
    if os.path.isfile(path):
        return [path]
    pickled = [name for name in PICKLED_WEIGHTS if os.path.exists(os.path.join(directory, name))]
    if pickled:
        raise ValueError(
            f"{directory!r} holds its weights as {pickled[0]}, which item_jax does not read (no "
            f"pickle). Write {WEIGHTS_FILE} with transformers: "
            "`Model.from_pretrained(DIR).save_pretrained(DIR, safe_serialization=True)`."
        )
    raise FileNotFoundError(f"{directory!r} has neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE}.")


def write_checkpoint(directory: str, config: dict, tensors: dict[str, np.ndarray]) -> None:
    """Writes `config.json` and `model.safetensors` (metadata format "pt", as transformers
    writes it)."""
    from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    save_file(
        {name: np.ascontiguousarray(value) for name, value in tensors.items()},
        os.path.join(directory, WEIGHTS_FILE),
        metadata={"format": "pt"},
    )
