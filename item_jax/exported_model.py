"""Loads an export directory (`python -m item_jax.export`) into an embed function.

  model = item_jax.load_exported("runs/demo/export")
  vectors = model.embed(images=["a.jpg", None], titles=["red mug 12 oz", ""])

Needs no training code, no workdir and no TFRecords: the model module, the tokenizer and
the preprocessing that the converter and the training pipeline apply, in the same order
(`image_io` re-encoding, `preprocess.decode_image`, `manifest.clean_text`,
`preprocess.pack_title_tokens`). A missing image (`None` or "") or an empty title is
masked out of attention, exactly as in training.
"""

import dataclasses
import json
import os
from typing import Sequence

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from item_jax.data import image_io, manifest, preprocess, tokenizer
from item_jax.model import ItemModel, model_from_config

PARAMS_FILE = "params.msgpack"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.model"
INFO_FILE = "export_info.json"
MAX_IMAGE_PIXELS = 50_000_000


@dataclasses.dataclass
class ExportedModel:
  """An exported ITEm: `embed(images, titles)` -> float32 [N, embed_dim], L2-normalised."""
  config: ml_collections.ConfigDict
  params: dict
  model: ItemModel
  tokenizer: object
  stored_image_size: int     # The converter's shorter side for the training images.
  batch_size: int = 64

  def __post_init__(self):
    devices = jax.local_devices()
    if self.batch_size % len(devices):
      raise ValueError(f"batch_size {self.batch_size} must be a multiple of the "
                       f"{len(devices)} local devices")
    mesh = jax.sharding.Mesh(np.asarray(devices), ("batch",))
    self._batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    self.params = jax.device_put(self.params, replicated)
    # Batches are split over every local device; the parameters are replicated.
    self._embed = jax.jit(lambda params, *inputs: self.model.apply(
        {"params": params}, *inputs, method=ItemModel.embed),
        out_shardings=replicated)

  def preprocess(self, images: Sequence, titles: Sequence[str | None]) -> dict[str, np.ndarray]:
    """Model inputs for listings: images as paths, encoded bytes or None; titles as text."""
    if len(images) != len(titles):
      raise ValueError(f"{len(images)} images but {len(titles)} titles")
    size, length = self.config.model.image_size, self.config.model.max_text_len
    pixels, has_image, tokens, masks, has_title = [], [], [], [], []
    for image, title in zip(images, titles):
      image_tensor, image_flag = preprocess.decode_image(self.stored_jpeg(image), size)
      pixels.append(image_tensor.numpy())
      has_image.append(int(image_flag))
      cleaned, _ = manifest.clean_text(title or "")
      pieces = tokenizer.encode_titles(self.tokenizer, [cleaned])[0] if cleaned.strip() else []
      text_tokens, text_mask, title_flag = preprocess.pack_title_tokens(
          np.asarray(pieces, np.int32), length)
      tokens.append(text_tokens.numpy())
      masks.append(text_mask.numpy())
      has_title.append(int(title_flag))
    return dict(text_tokens=np.stack(tokens).astype(np.int32),
                text_mask=np.stack(masks).astype(np.int32),
                image=np.stack(pixels).astype(np.float32),
                has_image=np.asarray(has_image, np.int32),
                has_title=np.asarray(has_title, np.int32))

  def stored_jpeg(self, image) -> bytes:
    """The converter's stored form of an image (a path or encoded bytes); b"" for none."""
    if image is None or (isinstance(image, (str, bytes)) and len(image) == 0):
      return b""
    if isinstance(image, bytes):
      return image_io.store_image_bytes(image, self.stored_image_size, MAX_IMAGE_PIXELS).jpeg
    return image_io.load_listing_image(os.fspath(image), self.stored_image_size,
                                       MAX_IMAGE_PIXELS).jpeg

  def embed_inputs(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Embeddings of preprocessed inputs (the batch dict of docs/design.md)."""
    count = len(inputs["text_tokens"])
    out = []
    for start in range(0, count, self.batch_size):
      chunk = {k: v[start:start + self.batch_size] for k, v in inputs.items()}
      real = len(chunk["text_tokens"])
      padded = {k: np.concatenate([v, np.repeat(v[-1:], self.batch_size - real, axis=0)])
                for k, v in chunk.items()}  # A fixed shape compiles once.
      on_devices = jax.device_put(
          [padded[k] for k in ("text_tokens", "text_mask", "image", "has_image")],
          self._batch_sharding)
      vectors = self._embed(self.params, *on_devices)
      out.append(np.asarray(vectors)[:real])
    return np.concatenate(out) if out else np.zeros((0, self.config.model.embed_dim),
                                                     np.float32)

  def embed(self, images: Sequence, titles: Sequence[str | None]) -> np.ndarray:
    return self.embed_inputs(self.preprocess(images, titles))


def load_exported(path: str, *, batch_size: int = 64) -> ExportedModel:
  """Reads an export directory; parameters are cast to float32 for computing."""
  for name in (PARAMS_FILE, CONFIG_FILE, TOKENIZER_FILE, INFO_FILE):
    if not os.path.isfile(os.path.join(path, name)):
      raise FileNotFoundError(f"{os.path.join(path, name)} is missing: {path} is not an "
                              "export directory (python -m item_jax.export)")
  with open(os.path.join(path, CONFIG_FILE), encoding="utf-8") as f:
    config = ml_collections.ConfigDict(json.load(f))
  with open(os.path.join(path, PARAMS_FILE), "rb") as f:
    params = flax.serialization.msgpack_restore(f.read())
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  with open(os.path.join(path, INFO_FILE), encoding="utf-8") as f:
    info = json.load(f)
  return ExportedModel(config=config, params=params, model=model_from_config(config.model),
                       tokenizer=tokenizer.load_tokenizer(os.path.join(path, TOKENIZER_FILE)),
                       stored_image_size=int(info["stored_image_size"]), batch_size=batch_size)
