"""The ITEm transformer: one encoder stream over title tokens and raw image patches.

Sequence: `[CLS] t1..tn [SEP] <pad>.. p1..pm` (L text slots, then m patch slots). Token and
patch embeddings get their own position embeddings plus a modality-type embedding; padding
and absent modalities are masked out of attention.

Two block layouts (`model.block_norm`): "pre" (ViT: x + f(LN(x)), then a final LayerNorm)
and "post" (BERT: LN(x + f(x)), no final LayerNorm). `model.text_embedding_norm` adds BERT's
LayerNorm over the summed text embeddings; `model.gelu` picks tanh-approximate or exact
(erf) GELU; `model.layer_norm_epsilon` matches a source checkpoint. With these set as a
BERT's or a ViT's config says, `item_jax/interop/` imports its weights and the encoder
computes what that model computes (tests/test_interop.py).

Besides the encoder, the module owns the objective heads, one method each, so that every
head's inputs are explicit:
  * `itm_logits(cls_state)`                      image-text matching (2-way).
  * `mlm_logits(token_states)`                   masked words from their own states.
  * `mim_pixels(patch_states)`                   masked patches from their own states.
  * `gmlm_logits(cls_state, text_positions)`     masked words from `[CLS]` + slot position.
  * `gmim_pixels(cls_state, patch_positions)`    masked patches from `[CLS]` + position.
    (both read through a `GlobalSlotReader`: `[CLS]` concatenated with the LayerNormed
    position embedding of the slot, then a GELU MLP.)
The global heads take no sequence state at all: by construction they cannot read a masked
position's own output.

Parameters and activations carry logical axis names (see `item_jax/sharding.py`).
The matrix products, broadcast adds and attention are `item_jax/ops.py`'s: plain JAX ops on
accelerators, forms XLA CPU runs faster on the CPU backend (bf16 on its matrix units).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from item_jax import batch as batch_lib
from item_jax import ops

Array = jax.Array

# Logical axis names. Parameters: "embed", "mlp", "heads", "kv", "vocab", "pixels",
# "text_pos", "image_pos". Activations use the "act_" names so that parameter and
# activation placement are decided separately.
ACT_BATCH, ACT_LENGTH, ACT_EMBED = "act_batch", "act_length", "act_embed"
ACT_HEADS, ACT_MLP, ACT_VOCAB = "act_heads", "act_mlp", "act_vocab"


def patchify(images: Array, patch_size: int) -> Array:
    """[B, S, S, C] -> [B, (S/P)^2, P*P*C], row-major over the patch grid."""
    return einops.rearrange(
        images, "b (h p1) (w p2) c -> b (h w) (p1 p2 c)", p1=patch_size, p2=patch_size
    )


def _param(init, *axes):
    return nn.with_logical_partitioning(init, axes)


class Dense(nn.Module):
    """`nn.Dense`'s parameters and result; the product and the bias add are `item_jax/ops.py`'s."""

    features: int
    dtype: Any
    kernel_init: Callable
    bias_init: Callable
    use_bias: bool = True

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        kernel = self.param(
            "kernel", self.kernel_init, (inputs.shape[-1], self.features), jnp.float32
        )
        outputs = ops.dense(inputs.astype(self.dtype), kernel.astype(self.dtype))
        if self.use_bias:
            outputs = ops.add_broadcast(
                outputs, self.param("bias", self.bias_init, (self.features,), jnp.float32)
            )
        return outputs


def _dense(features, axes, dtype, name, use_bias=True, zero_init=False):
    # Output heads start at zero (big_vision's head_zeroinit): every objective starts at its
    # input-independent loss (ln 2 for ITM, the target mean for pixels) instead of with
    # large random logits whose gradients swamp the others under global-norm clipping.
    kernel_init = nn.initializers.zeros if zero_init else nn.initializers.xavier_uniform()
    return Dense(
        features,
        dtype=dtype,
        name=name,
        use_bias=use_bias,
        kernel_init=_param(kernel_init, *axes),
        bias_init=_param(nn.initializers.zeros, axes[-1]),
    )


BLOCK_NORMS = ("pre", "post")
PATCH_STEMS = ("linear", "conv")
# How a listing becomes its product embedding (`ItemModel.embed`): "views", the stream run on
# the title alone and on the photo alone, each pass's `[CLS]` projected and L2-normalised,
# the two concatenated; "fused", the projected `[CLS]` of one pass over title and photo.
PRODUCT_EMBEDDINGS = ("views", "fused")
# How the title-alone pass of the "views" embedding becomes one state: "cls", its final
# `[CLS]` state; "mean", the mean of its final states over the real slots (`[CLS]`, the
# pieces, `[SEP]`). Training is the same either way: the contrastive title view is `[CLS]`.
TITLE_POOLINGS = ("cls", "mean")
# config.model.title_pooling may also be "auto": the trainer measures both poolings on the
# validation split at the end of training and writes the better one into the workdir's
# config.json (`train_loop`); until then (and without a validation split) the module pools
# by the mean.
AUTO_TITLE_POOLING = "auto"
GELUS = {"tanh": True, "exact": False}  # model.gelu -> nn.gelu's `approximate`.
DEFAULT_LAYER_NORM_EPSILON = 1e-6


def _layer_norm(name, epsilon=DEFAULT_LAYER_NORM_EPSILON):
    # LayerNorm always runs in float32 (bf16 LayerNorm destabilises training).
    return nn.LayerNorm(
        epsilon=epsilon,
        dtype=jnp.float32,
        name=name,
        scale_init=_param(nn.initializers.ones, "embed"),
        bias_init=_param(nn.initializers.zeros, "embed"),
    )


class SelfAttention(nn.Module):
    """Multi-head self-attention; the products are `item_jax/ops.py`'s.

    `implementation`: None lets JAX choose, "xla" forces the XLA kernel, "cudnn" the cuDNN
    fused kernel (NVIDIA GPUs, bfloat16/float16 compute); see `ops.attention`.
    """

    num_heads: int
    dtype: Any
    implementation: str | None = None

    @nn.compact
    def __call__(self, x: Array, key_mask: Array) -> Array:
        width = x.shape[-1]
        head_dim = width // self.num_heads
        init = nn.initializers.xavier_uniform(in_axis=0, out_axis=(1, 2))

        def project(name, use_bias=True):
            kernel = self.param(
                f"{name}_kernel",
                _param(init, "embed", "heads", "kv"),
                (width, self.num_heads, head_dim),
            )
            projected = ops.dense(x, kernel.astype(self.dtype).reshape(width, -1)).reshape(
                x.shape[:-1] + (self.num_heads, head_dim)
            )
            if not use_bias:
                return projected
            bias = self.param(
                f"{name}_bias",
                _param(nn.initializers.zeros, "heads", "kv"),
                (self.num_heads, head_dim),
            )
            return ops.add_broadcast(projected, bias)

        # No key bias: it adds the same logit to every key of a query, which softmax ignores.
        query, key, value = project("query"), project("key", use_bias=False), project("value")
        query = nn.with_logical_constraint(query, (ACT_BATCH, ACT_LENGTH, ACT_HEADS, None))
        attended = ops.attention(query, key, value, key_mask, self.implementation)
        attended = nn.with_logical_constraint(attended, (ACT_BATCH, ACT_LENGTH, ACT_HEADS, None))
        out_kernel = self.param(
            "out_kernel",
            _param(
                nn.initializers.xavier_uniform(in_axis=(0, 1), out_axis=2), "heads", "kv", "embed"
            ),
            (self.num_heads, head_dim, width),
        )
        out_bias = self.param("out_bias", _param(nn.initializers.zeros, "embed"), (width,))
        return ops.add_broadcast(
            ops.dense(
                attended.reshape(attended.shape[:2] + (width,)),
                out_kernel.astype(self.dtype).reshape(width, width),
            ),
            out_bias,
        )


class EncoderBlock(nn.Module):
    """Pre-LN block (x + Attn(LN(x)); x + MLP(LN(x))) or post-LN (LN(x + Attn(x)); ...)."""

    num_heads: int
    mlp_dim: int
    dropout_rate: float
    dtype: Any
    attention_implementation: str | None = None
    block_norm: str = "pre"
    layer_norm_epsilon: float = DEFAULT_LAYER_NORM_EPSILON
    approximate_gelu: bool = True

    @nn.compact
    def __call__(self, x: Array, key_mask: Array, deterministic: bool) -> Array:
        dropout = nn.Dropout(self.dropout_rate, deterministic=deterministic)
        attention_norm = _layer_norm("attention_norm", self.layer_norm_epsilon)
        mlp_norm = _layer_norm("mlp_norm", self.layer_norm_epsilon)
        post = self.block_norm == "post"
        attention = SelfAttention(
            self.num_heads, self.dtype, self.attention_implementation, name="attention"
        )
        h = attention((x if post else attention_norm(x)).astype(self.dtype), key_mask)
        x = x + dropout(h)
        if post:
            x = attention_norm(x)
        h = (x if post else mlp_norm(x)).astype(self.dtype)
        h = _dense(self.mlp_dim, ("embed", "mlp"), self.dtype, "mlp_in")(h)
        h = nn.with_logical_constraint(
            ops.gelu(h, self.approximate_gelu), (ACT_BATCH, ACT_LENGTH, ACT_MLP)
        )
        h = _dense(x.shape[-1], ("mlp", "embed"), self.dtype, "mlp_out")(h)
        x = x + dropout(h)
        if post:
            x = mlp_norm(x)
        return nn.with_logical_constraint(x, (ACT_BATCH, ACT_LENGTH, ACT_EMBED))


class GlobalSlotReader(nn.Module):
    """The global heads' reader: the `[CLS]` state and one slot's position embedding only.

    `[CLS]` (unit scale after the final LayerNorm) is concatenated with the LayerNormed
    position embedding of the target slot (raw, it is ~50x smaller and a sum would drown it)
    and read by a GELU MLP, so that the head can tell which slot it predicts. It takes no
    sequence state: a masked slot's own output cannot reach it.

    The first layer over the concatenation is computed as the sum of its two halves: the
    `[CLS]` half once per example and the position half once per slot of the table, then
    gathered per target ([B] + [S] rows instead of [B x K] twice as wide; the same
    parameters and the same result).
    """

    mlp_dim: int
    dtype: Any
    approximate_gelu: bool = True

    @nn.compact
    def __call__(self, cls_state: Array, position_table: Array, slots: Array) -> Array:
        """cls_state [B, D], position_table [S, D], slots int [B, K] -> hidden [B, K, D] (f32)."""
        width = cls_state.shape[-1]
        positions = _layer_norm("position_norm")(position_table)
        h = _ConcatenatedInputDense(self.mlp_dim, self.dtype, name="mlp_in")(
            cls_state.astype(jnp.float32), positions, slots
        )
        h = _dense(width, ("mlp", "embed"), self.dtype, "mlp_out")(
            ops.gelu(h, self.approximate_gelu)
        )
        return _layer_norm("output_norm")(h)


class _ConcatenatedInputDense(nn.Module):
    """`Dense` over concat([row [B, D] broadcast over K, table[slots] [B, K, D]]), factored.

    Parameters as `_dense(features, (None, "mlp"), ...)` on the [B, K, 2D] concatenation.
    """

    features: int
    dtype: Any

    @nn.compact
    def __call__(self, rows: Array, table: Array, slots: Array) -> Array:
        width = rows.shape[-1]
        kernel = self.param(
            "kernel",
            _param(nn.initializers.xavier_uniform(), None, "mlp"),
            (2 * width, self.features),
            jnp.float32,
        )
        bias = self.param(
            "bias", _param(nn.initializers.zeros, "mlp"), (self.features,), jnp.float32
        )
        kernel = kernel.astype(self.dtype)
        per_row = ops.dense(rows.astype(self.dtype), kernel[:width])  # [B, F]
        per_slot = ops.add_broadcast(ops.dense(table.astype(self.dtype), kernel[width:]), bias)
        return per_row[:, None, :] + jnp.take(per_slot, slots, axis=0)  # [B, K, F]


class ConvStem(nn.Module):
    """Patch embeddings from a small convolutional stem instead of one linear map per patch.

    log2(P) 3x3 convolutions of stride 2 (GELU between them), widening to `hidden_dim` by
    doubling, bring the S x S photo to the (S/P) x (S/P) patch grid; a Dense maps each grid
    cell to the model width. The result has the linear patch embedding's shape and
    position, so the sequence, the masking and the heads are unchanged; the patches are
    still a fixed grid (no regions of interest). Early convolutions give the transformer
    the locality that a linear map of raw pixels lacks, and optimise far faster on
    little data (docs/experiments.md, section 7).
    """

    hidden_dim: int
    patch_size: int
    dtype: Any

    @nn.compact
    def __call__(self, images: Array) -> Array:
        """images [B, S, S, 3] -> [B, (S/P)^2, hidden_dim]."""
        num_convs = self.patch_size.bit_length() - 1
        x = images.astype(self.dtype)
        for index in range(num_convs):
            width = max(16, self.hidden_dim >> (num_convs - 1 - index))
            x = nn.Conv(
                width,
                (3, 3),
                strides=2,
                padding=1,
                dtype=self.dtype,
                kernel_init=_param(nn.initializers.he_normal(), None, None, None, None),
                bias_init=_param(nn.initializers.zeros, None),
                name=f"conv_{index}",
            )(x)
            x = ops.gelu(x, True)
        x = einops.rearrange(x, "b h w c -> b (h w) c")
        return _dense(self.hidden_dim, ("pixels", "embed"), self.dtype, "projection")(x)


class ItemModel(nn.Module):
    """Single-stream image-text encoder with the ITEm objective heads."""

    vocab_size: int
    image_size: int
    patch_size: int
    max_text_len: int
    num_layers: int
    hidden_dim: int
    num_heads: int
    mlp_dim: int
    embed_dim: int
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    remat: bool = False
    attention_implementation: str | None = None  # See SelfAttention.
    block_norm: str = "pre"  # BLOCK_NORMS.
    text_embedding_norm: bool = False  # BERT's LayerNorm over text embeddings.
    layer_norm_epsilon: float = DEFAULT_LAYER_NORM_EPSILON
    gelu: str = "tanh"  # GELUS.
    patch_stem: str = "linear"  # PATCH_STEMS.
    product_embedding: str = "fused"  # PRODUCT_EMBEDDINGS.
    title_pooling: str = "cls"  # TITLE_POOLINGS.

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def pixels_per_patch(self) -> int:
        return self.patch_size * self.patch_size * 3

    def setup(self):
        init_embed = nn.initializers.normal(0.02)
        self.token_embedding = nn.Embed(
            self.vocab_size,
            self.hidden_dim,
            dtype=self.dtype,
            name="token_embedding",
            embedding_init=_param(init_embed, "vocab", "embed"),
        )
        self.text_position = self.param(
            "text_position",
            _param(init_embed, "text_pos", "embed"),
            (self.max_text_len, self.hidden_dim),
        )
        self.image_position = self.param(
            "image_position",
            _param(init_embed, "image_pos", "embed"),
            (self.num_patches, self.hidden_dim),
        )
        self.modality_type = self.param(
            "modality_type", _param(init_embed, None, "embed"), (2, self.hidden_dim)
        )
        if self.patch_stem == "conv":
            self.conv_stem = ConvStem(
                self.hidden_dim, self.patch_size, self.dtype, name="conv_stem"
            )
        else:
            self.patch_embedding = _dense(
                self.hidden_dim, ("pixels", "embed"), self.dtype, "patch_embedding"
            )
        self.patch_mask_vector = self.param(
            "patch_mask_vector", _param(init_embed, "embed"), (self.hidden_dim,)
        )
        if self.text_embedding_norm:
            self.text_embedding_norm_layer = _layer_norm(
                "text_embedding_norm", self.layer_norm_epsilon
            )
        approximate_gelu = GELUS[self.gelu]
        block = nn.remat(EncoderBlock, static_argnums=(3,)) if self.remat else EncoderBlock
        self.blocks = [
            block(
                self.num_heads,
                self.mlp_dim,
                self.dropout_rate,
                self.dtype,
                self.attention_implementation,
                self.block_norm,
                self.layer_norm_epsilon,
                approximate_gelu,
                name=f"block_{i}",
            )
            for i in range(self.num_layers)
        ]
        if self.block_norm == "pre":  # Post-LN blocks end normalised already.
            self.final_norm = _layer_norm("final_norm", self.layer_norm_epsilon)
        self.embedding_projection = _dense(
            self.embed_dim, ("embed", None), jnp.float32, "embedding_projection"
        )
        # Heads.
        self.itm_head = _dense(2, ("embed", None), jnp.float32, "itm_head", zero_init=True)
        self.mlm_transform = _dense(self.hidden_dim, ("embed", None), self.dtype, "mlm_transform")
        self.mlm_norm = _layer_norm("mlm_norm", self.layer_norm_epsilon)
        self.vocab_bias = self.param(
            "vocab_bias", _param(nn.initializers.zeros, "vocab"), (self.vocab_size,)
        )
        self.mim_head = _dense(self.pixels_per_patch, ("embed", None), self.dtype, "mim_head")
        self.gmlm_reader = GlobalSlotReader(
            self.mlp_dim, self.dtype, approximate_gelu, name="gmlm_reader"
        )
        self.gmim_reader = GlobalSlotReader(
            self.mlp_dim, self.dtype, approximate_gelu, name="gmim_reader"
        )
        self.gmim_head = _dense(self.pixels_per_patch, ("embed", None), self.dtype, "gmim_head")

    # --- Encoder -------------------------------------------------------------------------

    def encode(
        self,
        text_tokens: Array,
        text_mask: Array,
        images: Array | None,
        has_image: Array,
        masked_patches: Array | None = None,
        deterministic: bool = True,
    ) -> dict:
        """Runs the encoder.

        Args:
          text_tokens: int [B, L'], `[CLS] .. [SEP] <pad>..` (already MLM-corrupted if training);
            L' <= L text slots (a shorter sequence, e.g. `[CLS] [SEP]` alone, drops the rest).
          text_mask: int [B, L'], 1 on real text slots.
          images: float [B, S, S, 3] in [-1, 1], or None: no patch slots at all (a title-only
            sequence; its outputs equal those of a full sequence with `has_image = 0`, since
            masked-out keys contribute nothing to attention).
          has_image: int [B]; 0 masks every patch slot out of attention.
          masked_patches: float [B, m] or None; 1 replaces that patch's embedding by the learned
            mask vector (MIM).
          deterministic: disables dropout.

        Returns:
          dict with `sequence_states` [B, L' + m, D] (float32), `cls_state` [B, D] and
          `key_mask` [B, L' + m] (m = 0 without images).
        """
        batch_size, text_len = text_tokens.shape
        tokens = self.token_embedding(text_tokens)
        tokens = ops.add_broadcast(
            ops.add_broadcast(tokens, self.text_position[:text_len]), self.modality_type[0]
        )
        if self.text_embedding_norm:
            tokens = self.text_embedding_norm_layer(tokens).astype(self.dtype)
        parts, key_masks = [tokens], [text_mask]
        if images is not None:
            patches = self._embed_patches(images, masked_patches)
            if masked_patches is not None:
                selected = masked_patches[..., None].astype(self.dtype)
                patches = (
                    patches * (1 - selected) + self.patch_mask_vector.astype(self.dtype) * selected
                )
            patches = ops.add_broadcast(
                ops.add_broadcast(patches, self.image_position), self.modality_type[1]
            )
            parts.append(patches)
            key_masks.append(jnp.broadcast_to(has_image[:, None], (batch_size, self.num_patches)))
        # The residual stream stays in float32 whatever the compute dtype (the blocks' inputs
        # and outputs; their products and activations are in the compute dtype): a bf16
        # stream cost the main job's model retrieval quality (docs/experiments.md P01).
        x = jnp.concatenate(parts, axis=1).astype(jnp.float32)
        x = nn.with_logical_constraint(x, (ACT_BATCH, ACT_LENGTH, ACT_EMBED))
        key_mask = jnp.concatenate(key_masks, axis=1).astype(jnp.int32)
        for block in self.blocks:
            x = block(x, key_mask, deterministic)
        states = self.final_norm(x) if self.block_norm == "pre" else x.astype(jnp.float32)
        return dict(sequence_states=states, cls_state=states[:, 0], key_mask=key_mask)

    def _embed_patches(self, images: Array, masked_patches: Array | None) -> Array:
        """[B, S, S, 3] -> [B, m, D] patch embeddings, before the mask vector and positions."""
        if self.patch_stem != "conv":
            return self.patch_embedding(patchify(images, self.patch_size).astype(self.dtype))
        if masked_patches is not None:
            # A conv stem's cells see past their own patch: blank the masked patches' pixels
            # first, so that no neighbouring cell carries what MIM is asked to predict.
            grid = self.image_size // self.patch_size
            keep = 1 - einops.repeat(
                masked_patches.astype(images.dtype),
                "b (h w) -> b (h p1) (w p2) 1",
                h=grid,
                p1=self.patch_size,
                p2=self.patch_size,
            )
            images = images * keep
        return self.conv_stem(images)

    def title_state(self, encoded: dict) -> Array:
        """One state [B, D] of a title-alone pass (`encode`'s output), as `title_pooling` says."""
        if self.title_pooling == "cls":
            return encoded["cls_state"]
        real = encoded["key_mask"].astype(jnp.float32)[..., None]
        return (encoded["sequence_states"] * real).sum(axis=1) / jnp.maximum(real.sum(axis=1), 1.0)

    def embed_product(self, cls_state: Array) -> Array:
        """The product embedding: projection of the final `[CLS]` state, L2-normalised."""
        projected = self.embedding_projection(cls_state.astype(jnp.float32))
        return projected / (jnp.linalg.norm(projected, axis=-1, keepdims=True) + 1e-6)

    def embed(self, text_tokens, text_mask, images, has_image) -> Array:
        """The L2-normalised product embedding [B, `product_embedding_width(self)`].

        "fused": one pass over title and photo. "views": a pass over the title alone and
        one over the photo alone (as the contrastive title and image views are encoded in
        training), each projected and L2-normalised, concatenated and L2-normalised again;
        the title pass is pooled as `title_pooling` says, the photo pass is its `[CLS]`.
        A listing without a title (only `[CLS] [SEP]`) or without a photo gets zeros for
        that half, so it is compared on what it has; one with neither gets the title pass
        of `[CLS] [SEP]`, the same vector for every such listing. In one fused pass the
        photo's patches outnumber the title's pieces and the `[CLS]` state came to carry
        little of the title (docs/experiments.md, section 9); two halves of equal norm weigh
        both the same.
        """

        if self.product_embedding == "fused":
            return self.embed_product(
                self.encode(text_tokens, text_mask, images, has_image)["cls_state"]
            )
        title_alone = self.embed_product(
            self.title_state(self.encode(text_tokens, text_mask, None, jnp.zeros_like(has_image)))
        )
        no_title = batch_lib.remove_titles(text_tokens[:, :2], text_mask[:, :2])
        photo_alone = self.embed_product(
            self.encode(no_title["text_tokens"], no_title["text_mask"], images, has_image)[
                "cls_state"
            ]
        )
        has_title = (text_mask.sum(axis=-1) > 2).astype(jnp.float32)[:, None]
        has_photo = (has_image > 0).astype(jnp.float32)[:, None]
        # A listing with neither keeps the title pass of `[CLS] [SEP]`: one constant vector,
        # so empty listings match each other, as the reference rows' empty feature does.
        title_weight = jnp.maximum(has_title, 1.0 - has_photo)
        halves = jnp.concatenate([title_alone * title_weight, photo_alone * has_photo], axis=-1)
        return halves / (jnp.linalg.norm(halves, axis=-1, keepdims=True) + 1e-6)

    def match_logits(self, text_tokens, text_mask, images, has_image) -> Array:
        """Encodes title-photo pairs and returns the ITM head's logits [B, 2] (1: matched)."""
        return self.itm_logits(self.encode(text_tokens, text_mask, images, has_image)["cls_state"])

    # --- Heads ---------------------------------------------------------------------------

    def itm_logits(self, cls_state: Array) -> Array:
        return self.itm_head(cls_state.astype(jnp.float32))

    def _vocab_logits(self, hidden: Array) -> Array:
        """Output projection tied to the token embeddings: float32 logits [B, K, V].

        The operands are in the compute dtype (bf16 products accumulate in float32).
        """
        table = self.token_embedding.embedding.astype(self.dtype)
        logits = ops.einsum("bkd,vd->bkv", hidden.astype(self.dtype), table, out_dtype=jnp.float32)
        return logits + self.vocab_bias

    def mlm_logits(self, token_states: Array) -> Array:
        """Masked words from their own output states [B, K, D] -> [B, K, V]."""
        hidden = self.mlm_norm(
            ops.gelu(self.mlm_transform(token_states.astype(self.dtype)), GELUS[self.gelu])
        )
        return self._vocab_logits(hidden)

    def mim_pixels(self, patch_states: Array) -> Array:
        """Masked patch pixels from their own output states [B, K, D] -> [B, K, P*P*3]."""
        return self.mim_head(patch_states.astype(self.dtype)).astype(jnp.float32)

    def gmlm_logits(self, cls_state: Array, text_positions: Array) -> Array:
        """GMLM: words at text slots `text_positions` [B, K] from `cls_state` [B, D] alone."""
        return self._vocab_logits(self.gmlm_reader(cls_state, self.text_position, text_positions))

    def gmim_pixels(self, cls_state: Array, patch_positions: Array) -> Array:
        """GMIM: pixels of patches `patch_positions` [B, K] from `cls_state` [B, D] alone."""
        return self.gmim_head(
            self.gmim_reader(cls_state, self.image_position, patch_positions)
        ).astype(jnp.float32)

    def __call__(
        self, text_tokens, text_mask, images, has_image, masked_patches=None, deterministic=True
    ):
        """Initialisation entry point: touches the encoder and every head once."""
        out = self.encode(text_tokens, text_mask, images, has_image, masked_patches, deterministic)
        cls_state = out["cls_state"]
        positions = jnp.zeros((text_tokens.shape[0], 1), jnp.int32)
        states = out["sequence_states"][:, :1]
        return (
            self.embed_product(cls_state),
            self.itm_logits(cls_state),
            self.mlm_logits(states),
            self.mim_pixels(states),
            self.gmlm_logits(cls_state, positions),
            self.gmim_pixels(cls_state, positions),
        )


# config.model fields the module takes under another name or in another form; every other
# field is passed as it is, by name.
_CONVERTED_FIELDS = {
    "compute_dtype": ("dtype", {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.__getitem__),
    "attention_implementation": ("attention_implementation", lambda name: name or None),
    "title_pooling": (
        "title_pooling",
        lambda name: "mean" if name == AUTO_TITLE_POOLING else name,
    ),
}


def product_embedding_width(model_config) -> int:
    """Width of the product embedding of `model_config` (`config.model` or an ItemModel)."""
    views = 2 if model_config.product_embedding == "views" else 1
    return views * model_config.embed_dim


def model_from_config(model_config) -> ItemModel:
    """Builds the module from `config.model`, each field passed to `ItemModel` by name."""
    from item_jax.config_check import ConfigError  # config_check imports this module.

    module_fields = {field.name for field in dataclasses.fields(ItemModel)} - {"parent", "name"}
    kwargs = {}
    for field, value in model_config.items():
        name, convert = _CONVERTED_FIELDS.get(field, (field, lambda value: value))
        if name not in module_fields:
            raise ConfigError(
                f"config.model.{field}: not a field of the model; config.model takes "
                f"{', '.join(sorted(module_fields - {'dtype'} | {'compute_dtype'}))}"
            )
        kwargs[name] = convert(value)
    return ItemModel(**kwargs)
