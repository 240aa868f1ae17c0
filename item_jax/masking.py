"""Masking draws for the objectives, made on device inside the jitted step.

Every draw has a fixed shape: a selection is `K` slot indices per example (the top-K of
random scores over the eligible slots) plus a per-slot weight that is 1 for the first
`round(rate * eligible)` of them and 0 for the rest. No boolean indexing, no dynamic shapes.

Masking modes (docs/design.md, "Objectives"):
  * `joint`: every example masks `text_rate` of its title pieces and `image_rate` of its
    patches in the same pass.
  * `modality_aware`: each example draws one of heavy-text (heavy_text_rate,
    light_image_rate), heavy-image (light_text_rate, heavy_image_rate) or light-both
    (light_text_rate, light_image_rate), as in MLIM.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from item_jax.data import tokenizer

Array = jax.Array


class Selection(NamedTuple):
    """Up to K selected slots per example."""

    positions: Array  # int32 [B, K]: slot indices (meaningful where weights > 0).
    weights: Array  # float32 [B, K]: 1 for selected slots, 0 for unused entries.


def max_rates(masking_config) -> tuple[float, float]:
    """The largest text and image rates the mode can draw (fixes K)."""
    if masking_config.mode == "joint":
        return masking_config.text_rate, masking_config.image_rate
    return (
        max(masking_config.heavy_text_rate, masking_config.light_text_rate),
        max(masking_config.heavy_image_rate, masking_config.light_image_rate),
    )


def selection_capacity(rate: float, num_slots: int) -> int:
    """K: how many slots a selection at `rate` of `num_slots` can need (at least 1)."""
    return max(1, min(num_slots, math.ceil(rate * num_slots) + 1))


def draw_rates(rng: Array, batch_size: int, masking_config) -> tuple[Array, Array]:
    """Per-example text and image masking rates, float32 [B] each."""
    if masking_config.mode == "joint":
        return (
            jnp.full((batch_size,), masking_config.text_rate, jnp.float32),
            jnp.full((batch_size,), masking_config.image_rate, jnp.float32),
        )
    choice = jax.random.randint(rng, (batch_size,), 0, 3)
    text_rates = jnp.array(
        [
            masking_config.heavy_text_rate,
            masking_config.light_text_rate,
            masking_config.light_text_rate,
        ],
        jnp.float32,
    )
    image_rates = jnp.array(
        [
            masking_config.light_image_rate,
            masking_config.heavy_image_rate,
            masking_config.light_image_rate,
        ],
        jnp.float32,
    )
    return text_rates[choice], image_rates[choice]


def select_slots(rng: Array, eligible: Array, rates: Array, capacity: int) -> Selection:
    """Selects `round(rate * #eligible)` (at least 1 when any) eligible slots per example.

    Args:
      rng: PRNG key.
      eligible: [B, N] 0/1, which slots may be selected.
      rates: float32 [B], fraction of eligible slots to select.
      capacity: K, the fixed number of returned positions.
    """
    scores = jax.random.uniform(rng, eligible.shape)
    scores = jnp.where(eligible > 0, scores, -1.0)
    top_scores, positions = jax.lax.top_k(scores, capacity)
    num_eligible = eligible.sum(axis=1).astype(jnp.float32)
    wanted = jnp.maximum(jnp.round(rates * num_eligible), jnp.minimum(num_eligible, 1.0))
    rank = jnp.arange(capacity, dtype=jnp.float32)[None, :]
    weights = ((rank < wanted[:, None]) & (top_scores >= 0)).astype(jnp.float32)
    return Selection(positions.astype(jnp.int32), weights)


def selection_to_slots(selection: Selection, num_slots: int) -> Array:
    """Dense per-slot indicator float32 [B, N] of a selection."""
    one_hot = jax.nn.one_hot(selection.positions, num_slots, dtype=jnp.float32)
    return jnp.einsum("bkn,bk->bn", one_hot, selection.weights)


def corrupt_text(rng: Array, text_tokens: Array, selected_slots: Array, vocab_size: int) -> Array:
    """BERT corruption of the selected slots: 80% [MASK], 10% random piece, 10% unchanged."""
    choice_rng, token_rng = jax.random.split(rng)
    draw = jax.random.uniform(choice_rng, text_tokens.shape)
    random_tokens = jax.random.randint(
        token_rng, text_tokens.shape, tokenizer.FIRST_WORD_PIECE_ID, vocab_size
    )
    corrupted = jnp.where(
        draw < 0.8, tokenizer.MASK_ID, jnp.where(draw < 0.9, random_tokens, text_tokens)
    )
    return jnp.where(selected_slots > 0, corrupted, text_tokens).astype(text_tokens.dtype)


def title_piece_slots(text_tokens: Array, text_mask: Array) -> Array:
    """[B, L] 0/1: real title pieces (not [CLS], [SEP] or padding): the MLM-eligible slots."""
    special = (text_tokens == tokenizer.CLS_ID) | (text_tokens == tokenizer.SEP_ID)
    return ((text_mask > 0) & ~special).astype(jnp.int32)


def shard_rows(values: Array, num_shards: int) -> Array:
    """[B, ...] -> [num_shards, B / num_shards, ...]: the batch as its blocks of examples."""
    return values.reshape((num_shards, values.shape[0] // num_shards) + values.shape[1:])


def gather_within_shards(values: Array, source: Array, num_shards: int) -> Array:
    """`values[source]`, for indices that each lie in their own row's block of the batch.

    With one shard it is the plain gather. With more, the batch is cut into `num_shards`
    blocks (the examples of one data-parallel device: the batch is split over its devices
    in order) and each block gathers from itself alone, a batched gather that the SPMD
    partitioner keeps on the device: the plain gather of a batch-sharded array is an
    all-gather of `values` over every data-parallel device.

    Args:
      values: [B, ...] rows to gather.
      source: int [B, ...]: global row indices, each in the block of its leading position.
      num_shards: the number of blocks; divides B.
    """
    if num_shards == 1:
        return values[source]
    block_size = values.shape[0] // num_shards
    block_start = (jnp.arange(num_shards, dtype=source.dtype) * block_size).reshape(
        (num_shards,) + (1,) * source.ndim
    )
    local = shard_rows(source, num_shards) - block_start
    gathered = jax.vmap(lambda rows, index: rows[index])(shard_rows(values, num_shards), local)
    return gathered.reshape(source.shape + values.shape[1:])


def draw_itm_partners(
    rng: Array,
    group_index: Array,
    eligible: Array,
    negative_fraction: float,
    num_candidates: int = 8,
    num_shards: int = 1,
    seller_index: Array | None = None,
) -> tuple[Array, Array]:
    """Picks, for a fraction of examples, another example's image from the batch.

    A partner is never the example itself, never of the same product group, and must itself
    have an image (`eligible`). Each example tries `num_candidates` random partners and takes
    the first valid one; if none is valid it stays matched.

    With `num_shards` > 1 the candidates come from the example's own block of
    `B / num_shards` consecutive examples (its data-parallel device's shard of the batch;
    `config.masking.itm_partners = "shard"`), so that taking the partners' images needs no
    communication (`gather_within_shards`). One shard is the draw over the whole batch.
    With `seller_index` the partner is the example's own seller's whenever one of its
    candidates is (`config.same_seller_negatives`).

    Args:
      rng: PRNG key.
      group_index: int [B] product groups of the (global) batch.
      eligible: [B] 0/1: examples with both a title and an image.
      negative_fraction: q, the fraction of examples made into mismatched pairs.
      num_candidates: partners tried per example.
      num_shards: blocks of the batch that partners are drawn within; divides B.
      seller_index: int [B] or None: who listed each example.

    Returns:
      (image_source [B] int32: whose image each example gets (a global index); matched [B]
      int32: 1 if the example keeps its own image).
    """
    batch_size = group_index.shape[0]
    if batch_size % num_shards:
        raise ValueError(f"{num_shards} shards do not divide the batch of {batch_size}")
    shard_size = batch_size // num_shards
    pick_rng, candidate_rng = jax.random.split(rng)
    wants_negative = jax.random.uniform(pick_rng, (batch_size,)) < negative_fraction
    block_start = (jnp.arange(batch_size) // shard_size * shard_size)[:, None]
    candidates = block_start + jax.random.randint(
        candidate_rng, (batch_size, num_candidates), 0, shard_size
    )
    valid = (
        (gather_within_shards(group_index, candidates, num_shards) != group_index[:, None])
        & (gather_within_shards(eligible, candidates, num_shards) > 0)
        & (candidates != jnp.arange(batch_size)[:, None])
    )
    if seller_index is not None:
        # A partner of the example's own seller where one is among the candidates, else any
        # (in a catalog of many sellers most would otherwise have no mismatched pair).
        same_seller = valid & (
            gather_within_shards(seller_index, candidates, num_shards) == seller_index[:, None]
        )
        valid = jnp.where(same_seller.any(axis=1, keepdims=True), same_seller, valid)
    has_valid = valid.any(axis=1)
    first_valid = jnp.argmax(valid, axis=1)
    partner = jnp.take_along_axis(candidates, first_valid[:, None], axis=1)[:, 0]
    negative = wants_negative & has_valid & (eligible > 0)
    image_source = jnp.where(negative, partner, jnp.arange(batch_size))
    return image_source.astype(jnp.int32), (~negative).astype(jnp.int32)
