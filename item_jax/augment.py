"""On-device augmentations of the contrastive views (the extension beyond the paper).

Two listings of one product differ in wording order and in viewpoint; the contrastive
views can be perturbed the same way, drawn inside the jitted step with fixed shapes:
  * `shuffle_title_pieces`: a title's pieces in random order (`config.contrastive.shuffle_title`);
  * `random_resized_crops`: a random square crop of each photo, resized back, and mirrored
    half of the time (`config.contrastive.image_crop_min_scale`; colours are left alone,
    they tell products apart).
"""

import jax
import jax.numpy as jnp

from item_jax.masking import title_piece_slots

Array = jax.Array


def shuffle_title_pieces(rng: Array, text_tokens: Array, text_mask: Array) -> Array:
    """Permutes each title's pieces at random; `[CLS]`, `[SEP]` and padding stay in place."""
    eligible = title_piece_slots(text_tokens, text_mask)
    num_slots = text_tokens.shape[1]
    slots = jnp.arange(num_slots, dtype=jnp.float32)[None, :]
    # Title pieces fill slots 1..n: random keys in (0.5, n + 0.5) reorder them among
    # themselves, while every other slot keeps its own index as its key.
    pieces = eligible.sum(axis=1, keepdims=True).astype(jnp.float32)
    keys = jnp.where(eligible > 0, 0.5 + jax.random.uniform(rng, text_tokens.shape) * pieces, slots)
    return jnp.take_along_axis(text_tokens, jnp.argsort(keys, axis=1), axis=1)


def random_resized_crops(rng: Array, images: Array, min_scale: float) -> Array:
    """images [B, S, S, 3] -> random square crops (side in [min_scale, 1] x S), resized to S."""
    batch_size, size = images.shape[0], images.shape[1]
    scale_rng, offset_rng, flip_rng = jax.random.split(rng, 3)
    side = jax.random.uniform(scale_rng, (batch_size,), minval=min_scale, maxval=1.0)
    offset = jax.random.uniform(offset_rng, (batch_size, 2)) * (1.0 - side[:, None]) * size

    def crop(image, side, offset):
        zoom = 1.0 / side
        return jax.image.scale_and_translate(
            image,
            image.shape,
            spatial_dims=(0, 1),
            scale=jnp.stack([zoom, zoom]),
            translation=-offset * zoom,
            method="linear",
            antialias=True,
        )

    cropped = jax.vmap(crop)(images.astype(jnp.float32), side, offset)
    flip = jax.random.bernoulli(flip_rng, 0.5, (batch_size,))
    return jnp.where(flip[:, None, None, None], cropped[:, :, ::-1], cropped).astype(images.dtype)
