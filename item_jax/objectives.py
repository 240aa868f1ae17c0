"""The objectives: one table, and the loss function that sums the enabled ones.

`OBJECTIVES` is the one list of what can be trained: each entry names the objective, the
modalities it needs (config checks), what its targets need masked, the `ItemModel` head it
trains and its loss (from the encoder's output states and the masking targets). Config
validation, the console line and the summed loss all derive from it, so adding an
objective is one entry here plus its head in `model.py`.

The five ITEm objectives (ITM, MLM, MIM, GMLM, GMIM; docs/design.md, "Objectives") share one
encoder pass: ITM pairs some titles with another product's image, the title and the
patches are masked (`item_jax/masking.py`), and each head reads what the spec allows it
to read. The masked-modelling losses count matched pairs only. `contrastive`, this
project's extension beyond the paper, compares the pass's product embedding with other
views of each listing (more encoder passes; `info_nce`). The total loss is the weighted
sum of the enabled objectives (`config.objectives`, `config.loss_weights`); every loss and
accuracy is returned as a metric.
"""

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from item_jax import augment, masking
from item_jax import batch as batch_lib
from item_jax.configs.objective_names import ITEM_OBJECTIVES, OBJECTIVE_NAMES
from item_jax.model import ItemModel, patchify

Array = jax.Array


def _gather_slots(states: Array, positions: Array) -> Array:
    """states [B, N, D], positions [B, K] -> [B, K, D]."""
    return jnp.take_along_axis(states, positions[..., None], axis=1)


def _weighted_mean(values: Array, weights: Array) -> Array:
    return (values * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def _token_prediction(logits: Array, targets: Array, weights: Array) -> tuple[Array, Array]:
    """Cross-entropy over the vocabulary and the accuracy, from one max over the logits.

    A prediction is right when the target's logit is the largest (a tie counts as right).
    The accuracy reads the max the log-softmax takes anyway: an argmax over the vocabulary
    was a separate pass over the logits (docs/performance.md).
    """
    shifted = logits - jax.lax.stop_gradient(logits.max(axis=-1, keepdims=True))
    target_logit = jnp.take_along_axis(shifted, targets[..., None], axis=-1)[..., 0]
    loss = jnp.log(jnp.exp(shifted).sum(axis=-1)) - target_logit
    correct = (target_logit >= 0).astype(jnp.float32)
    return _weighted_mean(loss, weights), _weighted_mean(correct, weights)


def _pixel_regression(predicted: Array, targets: Array, weights: Array) -> Array:
    per_patch = ((predicted - targets) ** 2).mean(axis=-1)
    return _weighted_mean(per_patch, weights)


# Each loss: (head, model, sequence_states [B, N, D], targets) -> (loss, extra metrics);
# `head(method, *args)` applies an `ItemModel` method with the current parameters.


def _itm_loss(head, model, states, targets):
    del model
    logits = head(ItemModel.itm_logits, states[:, 0])
    per_example = optax.softmax_cross_entropy_with_integer_labels(logits, targets["matched"])
    accuracy = _weighted_mean(
        (logits.argmax(-1) == targets["matched"]).astype(jnp.float32), targets["itm_weights"]
    )
    return _weighted_mean(per_example, targets["itm_weights"]), {"itm_accuracy": accuracy}


def _mlm_loss(head, model, states, targets):
    del model
    token_states = _gather_slots(states, targets["text_positions"])
    loss, accuracy = _token_prediction(
        head(ItemModel.mlm_logits, token_states), targets["text_targets"], targets["text_weights"]
    )
    return loss, {"mlm_accuracy": accuracy}


def _gmlm_loss(head, model, states, targets):
    del model
    loss, accuracy = _token_prediction(
        head(ItemModel.gmlm_logits, states[:, 0], targets["text_positions"]),
        targets["text_targets"],
        targets["text_weights"],
    )
    return loss, {"gmlm_accuracy": accuracy}


def _mim_loss(head, model, states, targets):
    patch_states = _gather_slots(states, model.max_text_len + targets["patch_positions"])
    return _pixel_regression(
        head(ItemModel.mim_pixels, patch_states), targets["pixel_targets"], targets["patch_weights"]
    ), {}


def _gmim_loss(head, model, states, targets):
    del model
    return _pixel_regression(
        head(ItemModel.gmim_pixels, states[:, 0], targets["patch_positions"]),
        targets["pixel_targets"],
        targets["patch_weights"],
    ), {}


@dataclasses.dataclass(frozen=True)
class Objective:
    """One row of the table."""

    name: str
    needs: tuple[str, ...]  # Modalities ("text", "image") the model must see.
    masks: str | None  # "text" / "image": its targets are masked title pieces / patches.
    head: str  # The `ItemModel` head it trains.
    loss: Callable | None  # See above; None: computed over the views (`contrastive`).
    metrics: tuple[str, ...]  # Its metrics, in console order.
    in_paper: bool  # One of ITEm's five objectives.


OBJECTIVES = (
    Objective(
        "itm", ("text", "image"), None, "itm_logits", _itm_loss, ("itm_loss", "itm_accuracy"), True
    ),
    Objective(
        "mlm", ("text",), "text", "mlm_logits", _mlm_loss, ("mlm_loss", "mlm_accuracy"), True
    ),
    Objective("mim", ("image",), "image", "mim_pixels", _mim_loss, ("mim_loss",), True),
    Objective(
        "gmlm", ("text",), "text", "gmlm_logits", _gmlm_loss, ("gmlm_loss", "gmlm_accuracy"), True
    ),
    Objective("gmim", ("image",), "image", "gmim_pixels", _gmim_loss, ("gmim_loss",), True),
    Objective(
        "contrastive",
        (),
        None,
        "embed_product",
        None,
        ("contrastive_loss", "contrastive_accuracy"),
        False,
    ),
)
OBJECTIVES_BY_NAME = {objective.name: objective for objective in OBJECTIVES}
# Configs name the objectives without importing JAX: the names live in a module of their own,
# and the table must list exactly those.
if tuple(OBJECTIVES_BY_NAME) != OBJECTIVE_NAMES or ITEM_OBJECTIVES != ",".join(
    objective.name for objective in OBJECTIVES if objective.in_paper
):
    raise ImportError(
        "item_jax/objectives.py's table and item_jax/configs/objective_names.py disagree"
    )
# The contrastive views: "title" (the title alone), "image" (the photo alone), "remask" (the
# whole listing under a second, independent masking). What each needs to see:
CONTRASTIVE_VIEW_NEEDS = {"title": ("text",), "image": ("image",), "remask": ()}
# Console order: the losses, then the accuracies.
CONSOLE_METRICS = tuple(
    key for o in OBJECTIVES for key in o.metrics if key.endswith("_loss")
) + tuple(key for o in OBJECTIVES for key in o.metrics if not key.endswith("_loss"))


def parse_views(text: str) -> tuple[str, ...]:
    """ "title,image" -> ("title", "image")."""
    return tuple(view.strip() for view in text.split(",") if view.strip())


def parse_view_pairs(text: str) -> tuple[tuple[str, str], ...]:
    """Parses "title-image,..." into (("title", "image"), ...): the views set against each other."""
    pairs = []
    for item in text.split(","):
        if item.strip():
            parts = tuple(part.strip() for part in item.split("-"))
            if len(parts) != 2 or not all(parts):
                raise ValueError(f"a cross-view pair is written FIRST-SECOND, got {item.strip()!r}")
            pairs.append(parts)
    return tuple(pairs)


def enabled_objectives(config) -> tuple[str, ...]:
    return tuple(name.strip() for name in config.objectives.split(",") if name.strip())


def enabled_modalities(config) -> tuple[str, ...]:
    return tuple(name.strip() for name in config.modalities.split(",") if name.strip())


def normalized_patch_pixels(images: Array, patch_size: int, variance_eps: float) -> Array:
    """MIM targets: each patch's pixels minus their mean, over sqrt(variance + variance_eps).

    As MAE, but `variance_eps` (`config.mim_target_variance_eps`, pixels in [-1, 1]) keeps a
    flat patch (a plain background, a uniform product body) from being scaled up to unit
    variance: with MAE's 1e-6 its targets would be its JPEG noise, magnified, which no state
    can predict and which drowned the objectives' useful gradients (docs/design.md).
    """
    patches = patchify(images.astype(jnp.float32), patch_size)
    mean = patches.mean(axis=-1, keepdims=True)
    var = patches.var(axis=-1, keepdims=True)
    return (patches - mean) / jnp.sqrt(var + variance_eps)


class ObjectiveFns(NamedTuple):
    """The loss function and its two halves (the halves are what the tests probe)."""

    prepare: Callable  # (batch, rng) -> (encoder inputs dict, targets dict)
    head_losses: Callable  # (params, sequence_states, targets) -> (total, metrics)
    loss: Callable  # (params, batch, rng) -> (total, metrics)


def make_objective_fns(model: ItemModel, config, batch_shards: int = 1) -> ObjectiveFns:
    """Builds the objectives of `config` for `model`.

    `batch_shards`: the blocks the global batch is split into over the data-parallel devices
    (`sharding.data_parallel_size`); with `config.masking.itm_partners = "shard"` each
    example's ITM partner comes from its own block.
    """
    objectives = enabled_objectives(config)
    itm_shards = batch_shards if config.masking.itm_partners == "shard" else 1
    modalities = enabled_modalities(config)
    text_rate_cap, image_rate_cap = masking.max_rates(config.masking)
    text_capacity = masking.selection_capacity(text_rate_cap, model.max_text_len - 2)
    image_capacity = masking.selection_capacity(image_rate_cap, model.num_patches)
    masks_text = any(OBJECTIVES_BY_NAME[name].masks == "text" for name in objectives)
    masks_image = any(OBJECTIVES_BY_NAME[name].masks == "image" for name in objectives)
    contrastive_views = (
        tuple(view.strip() for view in config.contrastive.views.split(",") if view.strip())
        if "contrastive" in objectives
        else ()
    )
    cross_view_pairs = (
        parse_view_pairs(config.contrastive.cross_views) if "contrastive" in objectives else ()
    )
    # Workdirs written before `cross_only_views` existed matched every view with the listing.
    cross_only_views = set(parse_views(config.contrastive.cross_only_views))

    def masked_inputs(batch, images, rng):
        """Masking draws over one batch: the encoder's inputs and the selected slots."""
        rate_rng, text_rng, corrupt_rng, image_rng = jax.random.split(rng, 4)
        batch_size = batch["text_tokens"].shape[0]
        text_rates, image_rates = masking.draw_rates(rate_rng, batch_size, config.masking)
        text_tokens = batch["text_tokens"]
        text_selection = masking.select_slots(
            text_rng,
            masking.title_piece_slots(text_tokens, batch["text_mask"]),
            text_rates if masks_text else jnp.zeros_like(text_rates),
            text_capacity,
        )
        corrupted_tokens = masking.corrupt_text(
            corrupt_rng,
            text_tokens,
            masking.selection_to_slots(text_selection, model.max_text_len),
            model.vocab_size,
        )
        patch_eligible = jnp.broadcast_to(
            batch["has_image"][:, None], (batch_size, model.num_patches)
        )
        image_selection = masking.select_slots(
            image_rng,
            patch_eligible,
            image_rates if masks_image else jnp.zeros_like(image_rates),
            image_capacity,
        )
        encoder_inputs = dict(
            text_tokens=corrupted_tokens,
            text_mask=batch["text_mask"],
            images=images,
            has_image=batch["has_image"],
            masked_patches=masking.selection_to_slots(image_selection, model.num_patches),
        )
        return encoder_inputs, text_selection, image_selection

    def prepare(batch, rng):
        """ITM pairing and masking draws: what the encoder sees and what the heads predict."""
        itm_rng, mask_rng = jax.random.split(rng)
        batch = batch_lib.keep_modalities(batch, modalities)
        batch_size = batch["text_tokens"].shape[0]
        valid = batch["valid"].astype(jnp.float32)
        images, has_image = batch["image"], batch["has_image"]
        both_modalities = batch["has_title"] * has_image
        if "itm" in objectives:  # A fraction of examples gets another group's image.
            image_source, matched = masking.draw_itm_partners(
                itm_rng,
                batch["group_index"],
                both_modalities,
                config.masking.itm_negative_fraction,
                num_shards=itm_shards,
                seller_index=batch["seller_index"] if config.same_seller_negatives else None,
            )
            images = masking.gather_within_shards(images, image_source, itm_shards)
        else:
            matched = jnp.ones((batch_size,), jnp.int32)
        matched_weight = matched.astype(jnp.float32) * valid
        encoder_inputs, text_selection, image_selection = masked_inputs(batch, images, mask_rng)
        text_tokens = batch["text_tokens"]
        targets = dict(
            matched=matched,
            itm_weights=both_modalities.astype(jnp.float32) * valid,
            text_positions=text_selection.positions,
            text_targets=jnp.take_along_axis(text_tokens, text_selection.positions, axis=1),
            text_weights=text_selection.weights * matched_weight[:, None],
            patch_positions=image_selection.positions,
            pixel_targets=_gather_slots(
                normalized_patch_pixels(images, model.patch_size, config.mim_target_variance_eps),
                image_selection.positions,
            ),
            patch_weights=image_selection.weights * matched_weight[:, None],
            valid=valid,
        )
        return encoder_inputs, targets

    def head_losses(params, sequence_states, targets):
        """Every enabled objective's loss from the encoder's output states."""

        def head(method, *args):
            return model.apply({"params": params}, *args, method=method)

        metrics, losses = {}, {}
        for name in objectives:
            loss_fn = OBJECTIVES_BY_NAME[name].loss
            if loss_fn is not None:
                losses[name], extra = loss_fn(head, model, sequence_states, targets)
                metrics.update(extra)

        total = sum(
            config.loss_weights[name] * losses[name] for name in objectives if name in losses
        )
        metrics.update({f"{name}_loss": value for name, value in losses.items()})
        metrics["loss"] = total
        metrics["masked_text_tokens"] = targets["text_weights"].sum()
        metrics["masked_patches"] = targets["patch_weights"].sum()
        metrics["itm_negatives"] = (
            ((1 - targets["matched"]) * targets["valid"]).sum().astype(jnp.float32)
        )
        return total, metrics

    def encode(params, inputs, dropout_rng):
        return model.apply(
            {"params": params},
            **inputs,
            deterministic=config.model.dropout_rate == 0.0,
            method=ItemModel.encode,
            rngs={"dropout": dropout_rng},
        )

    def view_inputs(view, batch, rng):
        """Encoder inputs of one contrastive view of every listing, and which rows have it."""
        valid = batch["valid"].astype(jnp.float32)
        if view == "title":  # The title alone: no patch slots at all.
            tokens = batch["text_tokens"]
            if config.contrastive.shuffle_title:
                tokens = augment.shuffle_title_pieces(rng, tokens, batch["text_mask"])
            return (
                dict(
                    text_tokens=tokens,
                    text_mask=batch["text_mask"],
                    images=None,
                    has_image=jnp.zeros_like(batch["has_image"]),
                ),
                batch["has_title"].astype(jnp.float32) * valid,
            )
        if view == "image":  # The photo alone: `[CLS] [SEP]` and the patches.
            empty = batch_lib.remove_titles(batch["text_tokens"][:, :2], batch["text_mask"][:, :2])
            images = batch["image"]
            if config.contrastive.image_crop_min_scale < 1.0:
                images = augment.random_resized_crops(
                    rng, images, config.contrastive.image_crop_min_scale
                )
            return (
                dict(
                    text_tokens=empty["text_tokens"],
                    text_mask=empty["text_mask"],
                    images=images,
                    has_image=batch["has_image"],
                ),
                batch["has_image"].astype(jnp.float32) * valid,
            )
        inputs, _, _ = masked_inputs(batch, batch["image"], rng)  # "remask"
        return inputs, valid

    def contrastive_loss(params, anchor_cls, batch, targets, rng):
        """InfoNCE between each listing's (masked) embedding and its other views."""
        anchors = model.apply({"params": params}, anchor_cls, method=ItemModel.embed_product)
        # A listing whose photo ITM swapped is not an anchor of itself.
        anchor_weights = targets["matched"].astype(jnp.float32) * targets["valid"]
        seller_index = batch["seller_index"] if config.same_seller_negatives else None
        losses, accuracies, embedded = [], [], {}
        for index, view in enumerate(contrastive_views):
            view_rng, dropout_rng = jax.random.split(jax.random.fold_in(rng, index))
            inputs, view_weights = view_inputs(view, batch, view_rng)
            views = model.apply(
                {"params": params},
                encode(params, inputs, dropout_rng)["cls_state"],
                method=ItemModel.embed_product,
            )
            embedded[view] = (views, view_weights)
            if view in cross_only_views:
                continue
            loss, accuracy = info_nce(
                anchors,
                views,
                anchor_weights,
                view_weights,
                config.contrastive.temperature,
                config.contrastive.hard_negative_beta,
                seller_index,
            )
            losses.append(loss)
            accuracies.append(accuracy)
        # View against view (CLIP's title <-> photo): unlike the listing anchor, which holds the
        # very pixels of the image view, the title view shares nothing with the photo but what
        # both show (the category), so the image view must learn to see it.
        cross_losses = []
        for first, second in cross_view_pairs:
            (first_views, first_weights), (second_views, second_weights) = (
                embedded[first],
                embedded[second],
            )
            loss, _ = info_nce(
                first_views,
                second_views,
                first_weights,
                second_weights,
                config.contrastive.temperature,
                config.contrastive.hard_negative_beta,
                seller_index,
            )
            cross_losses.append(loss)
        loss = sum(losses) / len(losses) if losses else 0.0
        if cross_losses:
            loss = loss + config.contrastive.cross_view_weight * sum(cross_losses) / len(
                cross_losses
            )
        accuracy = sum(accuracies) / len(accuracies) if accuracies else jnp.zeros(())
        return loss, accuracy

    def loss(params, batch, rng):
        draw_rng, dropout_rng, view_rng = jax.random.split(rng, 3)
        encoder_inputs, targets = prepare(batch, draw_rng)
        encoded = encode(params, encoder_inputs, dropout_rng)
        total, metrics = head_losses(params, encoded["sequence_states"], targets)
        if "contrastive" in objectives:
            contrastive, accuracy = contrastive_loss(
                params,
                encoded["cls_state"],
                batch_lib.keep_modalities(batch, modalities),
                targets,
                view_rng,
            )
            total = total + config.loss_weights.contrastive * contrastive
            metrics.update(contrastive_loss=contrastive, contrastive_accuracy=accuracy, loss=total)
        return total, metrics

    return ObjectiveFns(prepare=prepare, head_losses=head_losses, loss=loss)


# A row's own seller's negatives in the batch below which it keeps the whole batch's
# (`info_nce`'s `seller_index`): with many sellers, most rows would otherwise compare with
# one or two listings, a loss that teaches nothing.
MIN_SELLER_NEGATIVES = 4


def info_nce(
    anchors: Array,
    views: Array,
    anchor_weights: Array,
    view_weights: Array,
    temperature: float,
    hard_negative_beta: float = 0.0,
    seller_index: Array | None = None,
    min_seller_negatives: int = MIN_SELLER_NEGATIVES,
) -> tuple[Array, Array]:
    """Symmetric InfoNCE over the batch: anchor i's positive is view i, the others negatives.

    Args:
      anchors, views: [B, E] L2-normalised embeddings.
      anchor_weights, view_weights: [B] 1 where the row takes part (valid, has the view).
      temperature: softmax temperature of the cosine similarities.
      hard_negative_beta: > 0 reweights each row's negatives by softmax(beta * cosine)
        (Robinson et al. 2021), so that the negatives most like the anchor dominate: a
        feature that many listings share (a seller's wording style, a vendor's art style)
        then no longer tells a listing from its negatives, and stops paying.
      seller_index: [B] or None: who listed each row; a row's negatives are then only the
        rows of its own seller, where the batch holds `min_seller_negatives` of them (a
        row with fewer keeps the whole batch's, or it would compare with next to nothing).
        Every listing's positives are its own views, by its own seller, so a feature that
        tells sellers apart (a seller's title template, a vendor's art style) would
        otherwise solve much of the loss and be all it teaches (docs/experiments.md,
        section 11).
      min_seller_negatives: see `seller_index`.

    Returns:
      (mean of the two directions' cross-entropies over the pairs that have both,
       accuracy of anchor -> view retrieval over those pairs).
    """
    similarity = jnp.einsum("ae,ve->av", anchors, views)
    labels = jnp.arange(anchors.shape[0])
    pair_weights = anchor_weights * view_weights
    blocked = jnp.finfo(similarity.dtype).min
    positive = jnp.eye(anchors.shape[0], dtype=bool)
    same_seller = None if seller_index is None else seller_index[:, None] == seller_index[None, :]

    def direction_loss(similarity, column_weights):
        """Cross-entropy of each row's positive (the diagonal) among its valid columns."""
        usable = column_weights[None, :] > 0
        if same_seller is not None:  # Itself and its own seller's rows, where there are enough.
            own = usable & (same_seller | positive)
            enough = (own & ~positive).sum(axis=1, keepdims=True) >= min_seller_negatives
            usable = jnp.where(enough, own, usable)
        logits = jnp.where(usable, similarity / temperature, blocked)
        if hard_negative_beta > 0:
            negative = usable & ~positive
            scores = jnp.where(negative, hard_negative_beta * similarity, blocked)
            log_weights = jax.nn.log_softmax(scores, axis=-1) + jnp.log(
                jnp.maximum(negative.sum(axis=-1, keepdims=True), 1).astype(similarity.dtype)
            )
            logits = jnp.where(negative, logits + jax.lax.stop_gradient(log_weights), logits)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels), logits

    to_views, view_logits = direction_loss(similarity, view_weights)
    to_anchors, _ = direction_loss(similarity.T, anchor_weights)
    loss = 0.5 * (_weighted_mean(to_views, pair_weights) + _weighted_mean(to_anchors, pair_weights))
    accuracy = _weighted_mean((view_logits.argmax(-1) == labels).astype(jnp.float32), pair_weights)
    return loss, accuracy
