"""The export format: a trained model's parameters, written and loaded (no pickle).

  python -m item_jax.cli.export --workdir runs/demo/train --out runs/demo/export [--dtype bfloat16]
  model = item_jax.load_exported("runs/demo/export")
  vectors = model.embed(images=["a.jpg", None], titles=["red mug 12 oz", ""])

An export directory holds
  * the parameters (no optimizer state), in float32 or bfloat16, as either
    `params.msgpack` (default: the flax msgpack serialisation of the tree, arrays and dicts
    only) or `params.safetensors` (`--format safetensors`: one tensor per parameter, named by
    its path in the tree joined with ".", e.g. `block_0.attention.query_kernel`,
    `token_embedding.embedding`; kernels are [in, out] as in flax; metadata
    `item_jax_format` = "1"); any safetensors reader loads it, no pickle either way;
  * `config.json`: the training config (the model block is what the loader needs);
  * the training data's tokenizer: `tokenizer.model` (SentencePiece) or `wordpiece.json`;
  * `export_info.json`: the step, the dtype, the parameter count, the source workdir and the
    converter's stored image size (the loader re-encodes raw images the same way).

`export_model` writes it from a training workdir's latest checkpoint. Loading needs no
training code, no workdir and no TFRecords: the model module, the tokenizer and
the preprocessing that the converter and the training pipeline apply, in the same order
(`image_io` re-encoding, `preprocess.decode_image`, `manifest.clean_text`,
`preprocess.pack_title_tokens`). A missing image (`None` or "") or an empty title is
masked out of attention, exactly as in training.
"""

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Sequence

import flax.serialization
import flax.traverse_util
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from item_jax import batch as batch_lib
from item_jax import configs, embedding
from item_jax.data import dataset_info, image_io, manifest, preprocess, tokenizer
from item_jax.data.dataset_info import DEFAULT_MAX_IMAGE_PIXELS, TOKENIZER_FILE, TOKENIZER_FILES
from item_jax.model import ItemModel, model_from_config, product_embedding_width

PARAMS_FILE = "params.msgpack"
SAFETENSORS_FILE = "params.safetensors"
PARAMS_FORMATS = {"msgpack": PARAMS_FILE, "safetensors": SAFETENSORS_FILE}
# Not an item_jax export: a Hugging Face BertModel directory of the text side
# (item_jax/interop/bert.py), for a model in BERT layout trained on WordPiece titles.
HF_BERT_FORMAT = "hf_bert"
EXPORT_FORMATS = tuple(PARAMS_FORMATS) + (HF_BERT_FORMAT,)
SAFETENSORS_SEPARATOR = "."
CONFIG_FILE = "config.json"
INFO_FILE = "export_info.json"
EXPORT_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass
class ExportedModel:
    """An exported ITEm: `embed(images, titles)` -> float32 [N, width], L2-normalised."""

    config: ml_collections.ConfigDict
    params: dict
    model: ItemModel
    tokenizer: object
    stored_image_size: int  # The converter's shorter side for the training images.
    batch_size: int = 64

    def __post_init__(self):
        # Batches are split over every local device (`item_jax/embedding.py`).
        self._embed = embedding.make_embed_fn(self.config.model, batch_size=self.batch_size)

    def preprocess(self, images: Sequence, titles: Sequence[str | None]) -> dict[str, np.ndarray]:
        """Model inputs for listings: images as paths, encoded bytes or None; titles as text."""
        if len(images) != len(titles):
            raise ValueError(f"{len(images)} images but {len(titles)} titles")
        return self.preprocess_stored([self.stored_jpeg(image) for image in images], titles)

    def preprocess_stored(
        self, stored_jpegs: Sequence[bytes], titles: Sequence[str | None]
    ) -> dict[str, np.ndarray]:
        """Model inputs from images already in the converter's stored form (`stored_jpeg`)."""
        size, length = self.config.model.image_size, self.config.model.max_text_len
        rows = []
        for stored, title in zip(stored_jpegs, titles):
            image_tensor, image_flag = preprocess.decode_image(stored, size)
            cleaned, _ = manifest.clean_text(title or "")
            pieces = (
                tokenizer.encode_titles(self.tokenizer, [cleaned])[0] if cleaned.strip() else []
            )
            text_tokens, text_mask, title_flag = preprocess.pack_title_tokens(
                np.asarray(pieces, np.int32), length
            )
            rows.append(
                dict(
                    text_tokens=text_tokens.numpy(),
                    text_mask=text_mask.numpy(),
                    image=image_tensor.numpy(),
                    has_image=int(image_flag),
                    has_title=int(title_flag),
                )
            )
        shapes = batch_lib.batch_shapes(self.config.model, len(rows))
        return {
            key: np.asarray([row[key] for row in rows], shapes[key][1]).reshape(shapes[key][0])
            for key in batch_lib.MODEL_INPUT_KEYS + ("has_title",)
        }

    def stored_jpeg(self, image) -> bytes:
        """The converter's stored form of an image (a path or encoded bytes); b"" for none."""
        if image is None or (isinstance(image, (str, bytes)) and len(image) == 0):
            return b""
        if isinstance(image, bytes):
            return image_io.store_image_bytes(
                image, self.stored_image_size, DEFAULT_MAX_IMAGE_PIXELS
            ).jpeg
        return image_io.load_listing_image(
            os.fspath(image), self.stored_image_size, DEFAULT_MAX_IMAGE_PIXELS
        ).jpeg

    def embed_inputs(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Embeddings of preprocessed inputs (the batch dict of `item_jax/batch.py`)."""
        count = len(inputs["text_tokens"])
        out = [
            self._embed(
                self.params, {k: v[start : start + self.batch_size] for k, v in inputs.items()}
            )
            for start in range(0, count, self.batch_size)
        ]
        return (
            np.concatenate(out)
            if out
            else np.zeros((0, product_embedding_width(self.config.model)), np.float32)
        )

    def embed(self, images: Sequence, titles: Sequence[str | None]) -> np.ndarray:
        return self.embed_inputs(self.preprocess(images, titles))


def load_exported(path: str, *, batch_size: int = 64) -> ExportedModel:
    """Reads an export directory; parameters are cast to float32 for computing."""
    params_files = [
        name for name in PARAMS_FORMATS.values() if os.path.isfile(os.path.join(path, name))
    ]
    tokenizer_files = [name for name in TOKENIZER_FILES if os.path.isfile(os.path.join(path, name))]
    for name in (
        params_files[0] if params_files else PARAMS_FILE,
        CONFIG_FILE,
        tokenizer_files[0] if tokenizer_files else TOKENIZER_FILE,
        INFO_FILE,
    ):
        if not os.path.isfile(os.path.join(path, name)):
            raise FileNotFoundError(
                f"{os.path.join(path, name)} is missing: {path} is not an "
                "export directory (python -m item_jax.cli.export)"
            )
    with open(os.path.join(path, CONFIG_FILE), encoding="utf-8") as f:
        config = configs.upgrade_stored_config(json.load(f))
    params = read_params(os.path.join(path, params_files[0]))
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    with open(os.path.join(path, INFO_FILE), encoding="utf-8") as f:
        info = json.load(f)
    return ExportedModel(
        config=config,
        params=params,
        model=model_from_config(config.model),
        tokenizer=tokenizer.load_tokenizer(os.path.join(path, tokenizer_files[0])),
        stored_image_size=int(info["stored_image_size"]),
        batch_size=batch_size,
    )


def export_fingerprint(path: str) -> str:
    """A short digest of an export's parameters, config and tokenizer.

    Embedded catalogs and serving indexes record it, so that a query embedded with another
    export (whose vectors live in another space) is refused rather than silently mis-ranked.
    """
    digest = hashlib.sha256()
    names = [
        name
        for name in (*PARAMS_FORMATS.values(), CONFIG_FILE, *TOKENIZER_FILES)
        if os.path.isfile(os.path.join(path, name))
    ]
    if not any(name in PARAMS_FORMATS.values() for name in names):
        raise FileNotFoundError(
            f"{path} holds no {' or '.join(PARAMS_FORMATS.values())}: not an "
            "export directory (python -m item_jax.cli.export)"
        )
    for name in names:
        digest.update(name.encode("utf-8"))
        with open(os.path.join(path, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def write_params(params, path: str) -> None:
    """The parameter tree to `params.msgpack` or `params.safetensors` (by the file name)."""
    if path.endswith(".safetensors"):
        from safetensors.flax import save_file  # pylint: disable=g-import-not-at-top

        flat = flax.traverse_util.flatten_dict(params, sep=SAFETENSORS_SEPARATOR)
        save_file(
            {name: jnp.asarray(value) for name, value in flat.items()},
            path,
            metadata={"item_jax_format": "1"},
        )
    else:
        with open(path, "wb") as f:
            f.write(flax.serialization.msgpack_serialize(params))


def read_params(path: str) -> dict:
    """The parameter tree written by `write_params`."""
    if path.endswith(".safetensors"):
        from safetensors.flax import load_file  # pylint: disable=g-import-not-at-top

        return flax.traverse_util.unflatten_dict(load_file(path), sep=SAFETENSORS_SEPARATOR)
    with open(path, "rb") as f:
        return flax.serialization.msgpack_restore(f.read())


def export_model(
    workdir: str,
    out_dir: str,
    *,
    dtype: str = "float32",
    step: int | None = None,
    params_format: str = "msgpack",
) -> dict:
    """Writes the export directory; returns its export_info."""
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"--dtype must be one of {sorted(EXPORT_DTYPES)}, got {dtype!r}")
    if params_format not in EXPORT_FORMATS:
        raise ValueError(f"--format must be one of {sorted(EXPORT_FORMATS)}, got {params_format!r}")
    from item_jax import train_step  # pylint: disable=g-import-not-at-top  (training code)

    config, params, restored_step = train_step.restore_trained_params(workdir, step)
    if params_format == HF_BERT_FORMAT:
        return _export_hf_bert(config, params, restored_step, workdir, out_dir, dtype)
    params = jax.tree.map(lambda x: np.asarray(jnp.asarray(x, EXPORT_DTYPES[dtype])), params)
    os.makedirs(out_dir, exist_ok=True)
    for stale in PARAMS_FORMATS.values():  # One parameter file per export.
        if os.path.exists(os.path.join(out_dir, stale)):
            os.remove(os.path.join(out_dir, stale))
    write_params(params, os.path.join(out_dir, PARAMS_FORMATS[params_format]))
    with open(os.path.join(out_dir, CONFIG_FILE), "w", encoding="utf-8") as f:
        f.write(config.to_json_best_effort(indent=2))
    data_info = dataset_info.load_dataset_info(config.data.dir)
    tokenizer_name = dataset_info.tokenizer_file(data_info)
    tokenizer_path = os.path.join(config.data.dir, tokenizer_name)
    if not os.path.isfile(tokenizer_path):
        raise FileNotFoundError(
            f"The run's tokenizer {tokenizer_path} is missing; the export needs it to embed titles."
        )
    for stale in TOKENIZER_FILES:
        if os.path.exists(os.path.join(out_dir, stale)):
            os.remove(os.path.join(out_dir, stale))
    shutil.copyfile(tokenizer_path, os.path.join(out_dir, tokenizer_name))
    info = dict(
        step=restored_step,
        dtype=dtype,
        format=params_format,
        workdir=os.path.abspath(workdir),
        stored_image_size=int(data_info["image_size"]),
        num_params=int(sum(x.size for x in jax.tree.leaves(params))),
        embed_dim=product_embedding_width(config.model),
    )
    with open(os.path.join(out_dir, INFO_FILE), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
    logging.info(
        "Exported step %d (%s, %d parameters) to %s",
        restored_step,
        dtype,
        info["num_params"],
        out_dir,
    )
    return info


def _export_hf_bert(config, params, restored_step, workdir, out_dir, dtype) -> dict:
    from item_jax.interop import bert  # pylint: disable=g-import-not-at-top

    data_info = dataset_info.load_dataset_info(config.data.dir)
    if dataset_info.tokenizer_kind(data_info) != "wordpiece":
        raise ValueError(
            f"--format {HF_BERT_FORMAT} needs a run on WordPiece titles (convert with "
            f"--wordpiece_vocab); {config.data.dir} was tokenized with "
            f"{dataset_info.tokenizer_kind(data_info)}."
        )
    wordpiece_tokenizer = tokenizer.load_tokenizer(
        os.path.join(config.data.dir, dataset_info.tokenizer_file(data_info))
    )
    params = jax.tree.map(
        lambda x: np.asarray(jnp.asarray(x, EXPORT_DTYPES[dtype]), np.float32), params
    )
    hf_config = bert.write_bert_directory(out_dir, params, config.model, wordpiece_tokenizer)
    info = dict(
        step=restored_step,
        dtype=dtype,
        format=HF_BERT_FORMAT,
        workdir=os.path.abspath(workdir),
        vocab_size=hf_config["vocab_size"],
        num_layers=hf_config["num_hidden_layers"],
    )
    logging.info(
        "Exported step %d's text side as a Hugging Face BertModel to %s", restored_step, out_dir
    )
    return info
