"""The batch layout: one dict of arrays, its shapes, and the ways to make or change one.

Every batch the model sees is a dict with these keys (B rows, L text slots, S x S images):

  image           float32 [B, S, S, 3]  pixels in [-1, 1] (zeros where there is no photo)
  has_image       int32   [B]           0: every patch slot is masked out of attention
  text_tokens     int32   [B, L]        `[CLS] pieces.. [SEP] <pad>..`
  text_mask       int32   [B, L]        1 on real text slots
  has_title       int32   [B]           0: the title is empty (`[CLS] [SEP]` only)
  group_index     int32   [B]           product group (ITM negatives come from other groups)
  category_index  int32   [B]           leaf category (evaluation only)
  seller_index    int32   [B]           who listed it (negatives come from the same seller)
  valid           int32   [B]           0 on padding rows of a final partial batch

The model itself reads the first four (`MODEL_INPUT_KEYS`). The input pipeline
(`data/input_pipeline.py`) yields real batches; this module gives their abstract shapes
(for compiling), dummy model inputs (for initialising), random batches (benchmarks and
tests), and the removal of a modality through the attention masks (the one-modality
variants, the contrastive views, evaluation's modality balance). `dims` is anything with
`max_text_len`, `image_size` (and for random batches `vocab_size`): `config.model` or an
`ItemModel`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from item_jax.data import tokenizer

BATCH_KEYS = (
    "image",
    "has_image",
    "text_tokens",
    "text_mask",
    "has_title",
    "group_index",
    "category_index",
    "seller_index",
    "valid",
)
MODEL_INPUT_KEYS = ("text_tokens", "text_mask", "image", "has_image")
REMOVALS = (None, "title", "image")


def batch_shapes(dims, batch_size: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{key: (shape, dtype)} of a batch of `batch_size` rows."""
    b, length, size = batch_size, dims.max_text_len, dims.image_size
    per_row = dict(image=(size, size, 3), text_tokens=(length,), text_mask=(length,))
    return {
        key: (
            (b,) + per_row.get(key, ()),
            np.dtype(np.float32) if key == "image" else np.dtype(np.int32),
        )
        for key in BATCH_KEYS
    }


def abstract_batch(dims, batch_size: int, sharding=None) -> dict[str, jax.ShapeDtypeStruct]:
    """ShapeDtypeStructs of a batch (for lowering the step ahead of time)."""
    return {
        key: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
        for key, (shape, dtype) in batch_shapes(dims, batch_size).items()
    }


def dummy_model_inputs(dims, batch_size: int = 1) -> tuple[jax.Array, ...]:
    """Positional model inputs (`MODEL_INPUT_KEYS` order) for `init`: one title, one photo."""
    shapes = batch_shapes(dims, batch_size)
    fill = dict(text_tokens=0, text_mask=1, image=0, has_image=1)
    return tuple(jnp.full(shapes[key][0], fill[key], shapes[key][1]) for key in MODEL_INPUT_KEYS)


def random_batch(dims, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A host batch of random photos and titles of 8-24 pieces; rows 2k and 2k+1 share a group."""
    rng = np.random.default_rng(seed)
    length, size = dims.max_text_len, dims.image_size
    tokens = np.zeros((batch_size, length), np.int32)
    mask = np.zeros((batch_size, length), np.int32)
    for row in range(batch_size):
        pieces = int(rng.integers(min(8, length - 2), min(24, length - 2) + 1))
        tokens[row, 0] = tokenizer.CLS_ID
        tokens[row, 1 : pieces + 1] = rng.integers(
            tokenizer.FIRST_WORD_PIECE_ID, dims.vocab_size, pieces
        )
        tokens[row, pieces + 1] = tokenizer.SEP_ID
        mask[row, : pieces + 2] = 1
    ones = np.ones((batch_size,), np.int32)
    return dict(
        image=rng.uniform(-1, 1, (batch_size, size, size, 3)).astype(np.float32),
        has_image=ones,
        text_tokens=tokens,
        text_mask=mask,
        has_title=ones,
        group_index=np.arange(batch_size, dtype=np.int32) // 2,
        category_index=np.zeros((batch_size,), np.int32),
        seller_index=np.zeros((batch_size,), np.int32),
        valid=ones,
    )


def remove_titles(text_tokens, text_mask) -> dict:
    """Text slots of listings without a title: `[CLS] [SEP] <pad>..`, `has_title` 0."""
    empty = (
        jnp.zeros_like(text_tokens).at[:, 0].set(tokenizer.CLS_ID).at[:, 1].set(tokenizer.SEP_ID)
    )
    mask = jnp.zeros_like(text_mask).at[:, :2].set(1)
    return dict(text_tokens=empty, text_mask=mask, has_title=jnp.zeros_like(text_tokens[:, 0]))


def remove_modality(batch: dict, removal: str | None) -> dict:
    """The batch with every title (`"title"`) or photo (`"image"`) removed from attention.

    None keeps it whole. Host (numpy) batches stay numpy; device batches stay on device.
    """
    if removal is None:
        return batch
    on_host = isinstance(batch["text_tokens"], np.ndarray)
    if removal == "image":
        removed = dict(has_image=jnp.zeros_like(batch["has_image"]))
    elif removal == "title":
        removed = remove_titles(batch["text_tokens"], batch["text_mask"])
    else:
        raise ValueError(f"unknown removal {removal!r}; one of {REMOVALS}")
    if on_host:
        removed = jax.tree.map(np.asarray, removed)
    return dict(batch, **removed)


def keep_modalities(batch: dict, modalities: tuple[str, ...]) -> dict:
    """The batch as a model that sees only `modalities` ("text", "image") sees it."""
    if "image" not in modalities:
        batch = remove_modality(batch, "image")
    if "text" not in modalities:
        batch = remove_modality(batch, "title")
    return batch
