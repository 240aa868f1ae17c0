"""The objectives read what the spec allows them to read, and masking draws are sound."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import small_config

from item_jax import batch as batch_lib
from item_jax import masking, objectives
from item_jax.batch import random_batch
from item_jax.data import tokenizer
from item_jax.model import ItemModel, model_from_config


def _setup(**overrides):
    config = small_config(**overrides)
    model = model_from_config(config.model)
    params = model.init(jax.random.key(0), *batch_lib.dummy_model_inputs(model))["params"]
    params = jax.tree.map(
        lambda x: x.value if hasattr(x, "value") else x,
        params,
        is_leaf=lambda x: hasattr(x, "value"),
    )
    batch = {k: jnp.asarray(v) for k, v in random_batch(config.model, 16, seed=1).items()}
    return config, model, params, batch


def _encode(model, params, encoder_inputs):
    return model.apply({"params": params}, **encoder_inputs, method=ItemModel.encode)


@pytest.mark.slow
def test_global_heads_read_only_the_cls_state():
    config, model, params, batch = _setup()
    fns = objectives.make_objective_fns(model, config)
    encoder_inputs, targets = fns.prepare(batch, jax.random.key(3))
    states = _encode(model, params, encoder_inputs)["sequence_states"]

    def loss_of(name):
        return lambda s: fns.head_losses(params, s, targets)[1][f"{name}_loss"]

    for global_name, local_name, first_slot in (
        ("gmlm", "mlm", 1),
        ("gmim", "mim", model.max_text_len),
    ):
        global_grad = jax.grad(loss_of(global_name))(states)
        local_grad = jax.grad(loss_of(local_name))(states)
        # The global head's loss moves only with the [CLS] state ...
        assert float(jnp.abs(global_grad[:, 0]).max()) > 0
        np.testing.assert_array_equal(np.asarray(global_grad[:, 1:]), 0.0)
        # ... while the local head reads the masked positions' own states.
        assert float(jnp.abs(local_grad[:, first_slot:]).max()) > 0
        np.testing.assert_array_equal(np.asarray(local_grad[:, 0]), 0.0)

    # Changing a masked position's own output state leaves the global losses unchanged.
    rows = jnp.arange(states.shape[0])
    masked_text_slot = targets["text_positions"][:, 0]
    masked_patch_slot = model.max_text_len + targets["patch_positions"][:, 0]
    perturbed = states.at[rows, masked_text_slot].add(3.0).at[rows, masked_patch_slot].add(3.0)
    before = fns.head_losses(params, states, targets)[1]
    after = fns.head_losses(params, perturbed, targets)[1]
    assert before["gmlm_loss"] == after["gmlm_loss"]
    assert before["gmim_loss"] == after["gmim_loss"]
    assert before["mlm_loss"] != after["mlm_loss"]
    assert before["mim_loss"] != after["mim_loss"]


@pytest.mark.slow
def test_global_reader_is_the_mlp_over_cls_and_the_slot_position_concatenated():
    """The factored first layer equals the Dense over [CLS ; LayerNorm(position)] per target."""
    import flax.linen as nn  # pylint: disable=g-import-not-at-top

    _, model, params, _ = _setup()
    leaves, treedef = jax.tree.flatten(params)  # Random everything (heads start at zero).
    params = jax.tree.unflatten(
        treedef,
        [jax.random.normal(jax.random.key(i), leaf.shape) * 0.2 for i, leaf in enumerate(leaves)],
    )
    cls_state = jax.random.normal(jax.random.key(1), (4, model.hidden_dim))
    slots = jax.random.randint(jax.random.key(2), (4, 5), 0, model.num_patches)
    got = model.apply({"params": params}, cls_state, slots, method=ItemModel.gmim_pixels)

    reader = params["gmim_reader"]
    positions = nn.LayerNorm(epsilon=1e-6).apply(
        {"params": reader["position_norm"]}, params["image_position"][slots]
    )
    combined = jnp.concatenate(
        [jnp.broadcast_to(cls_state[:, None], positions.shape), positions], axis=-1
    )
    dense = lambda p, x: x @ p["kernel"] + p["bias"]
    h = dense(reader["mlp_out"], jax.nn.gelu(dense(reader["mlp_in"], combined), approximate=True))
    h = nn.LayerNorm(epsilon=1e-6).apply({"params": reader["output_norm"]}, h)
    expected = dense(params["gmim_head"], h)
    assert float(jnp.abs(expected).min()) > 0
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    assert reader["mlp_in"]["kernel"].shape == (2 * model.hidden_dim, model.mlp_dim)
    # Factored: no [B, K, 2D] concatenation is built (the first layer's input per target).
    jaxpr = jax.make_jaxpr(
        lambda p, c, k: model.apply({"params": p}, c, k, method=ItemModel.gmim_pixels)
    )(params, cls_state, slots)
    assert not [
        equation
        for equation in jaxpr.jaxpr.eqns
        if equation.primitive.name == "concatenate"
        and equation.outvars[0].aval.shape == (4, 5, 2 * model.hidden_dim)
    ]


def test_itm_negatives_never_share_a_group():
    groups = jnp.asarray(np.repeat(np.arange(32), 4), jnp.int32)  # 128 listings, 4 per group.
    eligible = jnp.ones((128,), jnp.int32).at[:8].set(0)
    for seed in range(5):
        source, matched = masking.draw_itm_partners(jax.random.key(seed), groups, eligible, 0.5)
        source, matched = np.asarray(source), np.asarray(matched)
        negatives = matched == 0
        assert 0.3 < negatives.mean() < 0.6
        assert np.all(np.asarray(groups)[source[negatives]] != np.asarray(groups)[negatives])
        assert np.all(np.asarray(eligible)[source[negatives]] == 1)  # Partners have a photo.
        assert not negatives[:8].any()  # Ineligible stay matched.
        np.testing.assert_array_equal(source[~negatives], np.arange(128)[~negatives])


def test_itm_keeps_pairs_matched_when_no_other_group_exists():
    groups = jnp.zeros((16,), jnp.int32)
    _, matched = masking.draw_itm_partners(
        jax.random.key(0), groups, jnp.ones((16,), jnp.int32), 0.9
    )
    assert np.all(np.asarray(matched) == 1)


def test_masked_modelling_losses_ignore_mismatched_pairs():
    config, model, params, batch = _setup()
    # The ITM head starts at zero (every input scores ln 2); give it weights to read with.
    kernel = params["itm_head"]["kernel"]
    params = dict(
        params,
        itm_head=dict(
            params["itm_head"],
            kernel=jax.random.normal(jax.random.key(5), kernel.shape, kernel.dtype),
        ),
    )
    config.masking.itm_negative_fraction = 0.5
    fns = objectives.make_objective_fns(model, config)
    encoder_inputs, targets = fns.prepare(batch, jax.random.key(7))
    mismatched = np.asarray(targets["matched"]) == 0
    assert mismatched.any() and not mismatched.all()
    for key in ("text_weights", "patch_weights"):
        assert np.all(np.asarray(targets[key])[mismatched] == 0)
        assert np.asarray(targets[key])[~mismatched].sum() > 0
    states = _encode(model, params, encoder_inputs)["sequence_states"]
    noise = jax.random.normal(jax.random.key(1), states.shape)
    changed = jnp.where(jnp.asarray(mismatched)[:, None, None], states + noise, states)
    before = fns.head_losses(params, states, targets)[1]
    after = fns.head_losses(params, changed, targets)[1]
    for name in ("mlm", "mim", "gmlm", "gmim"):
        assert float(before[f"{name}_loss"]) == pytest.approx(
            float(after[f"{name}_loss"]), abs=1e-6
        ), name
    assert before["itm_loss"] != after["itm_loss"]


def test_text_selection_rate_and_eligibility():
    config, model, _, batch = _setup()
    eligible = masking.title_piece_slots(batch["text_tokens"], batch["text_mask"])
    rates = jnp.full((16,), 0.15)
    capacity = masking.selection_capacity(0.15, model.max_text_len - 2)
    selection = masking.select_slots(jax.random.key(0), eligible, rates, capacity)
    assert selection.positions.shape == (16, capacity)
    counts = np.asarray(selection.weights.sum(1))
    expected = np.maximum(np.round(0.15 * np.asarray(eligible.sum(1))), 1)
    np.testing.assert_array_equal(counts, expected)
    chosen = np.asarray(selection.positions)[np.asarray(selection.weights) > 0]
    rows = np.nonzero(np.asarray(selection.weights) > 0)[0]
    assert np.all(np.asarray(eligible)[rows, chosen] == 1)  # Never CLS, SEP or padding.
    tokens = np.asarray(batch["text_tokens"])
    assert not np.isin(
        tokens[rows, chosen], [tokenizer.CLS_ID, tokenizer.SEP_ID, tokenizer.PAD_ID]
    ).any()


def test_corruption_replaces_mostly_with_mask_token():
    tokens = jnp.full((64, 32), 100, jnp.int32)
    selected = jnp.ones((64, 32))
    corrupted = np.asarray(masking.corrupt_text(jax.random.key(0), tokens, selected, 8000))
    fractions = [(corrupted == tokenizer.MASK_ID).mean(), (corrupted == 100).mean()]
    assert 0.75 < fractions[0] < 0.85
    assert 0.07 < fractions[1] < 0.14
    untouched = masking.corrupt_text(jax.random.key(0), tokens, jnp.zeros((64, 32)), 8000)
    np.testing.assert_array_equal(np.asarray(untouched), np.asarray(tokens))


def test_modality_aware_masking_draws_three_regimes():
    config, model, _, batch = _setup(**{"masking.mode": "modality_aware"})
    text_rates, image_rates = masking.draw_rates(jax.random.key(0), 300, config.masking)
    pairs = {
        (round(float(t), 3), round(float(i), 3))
        for t, i in zip(np.asarray(text_rates), np.asarray(image_rates))
    }
    m = config.masking
    assert pairs == {
        (m.heavy_text_rate, m.light_image_rate),
        (m.light_text_rate, m.heavy_image_rate),
        (m.light_text_rate, m.light_image_rate),
    }
    fns = objectives.make_objective_fns(model, config)
    _, targets = fns.prepare(batch, jax.random.key(0))
    per_example_patches = np.asarray(targets["patch_weights"].sum(1))
    matched = np.asarray(targets["matched"]) == 1
    assert len(set(per_example_patches[matched].tolist())) > 1


def test_unimodal_baselines_hide_the_other_modality():
    config, model, params, batch = _setup(objectives="mlm,gmlm", modalities="text")
    fns = objectives.make_objective_fns(model, config)
    encoder_inputs, _ = fns.prepare(batch, jax.random.key(0))
    assert np.all(np.asarray(encoder_inputs["has_image"]) == 0)
    config, model, params, batch = _setup(objectives="mim,gmim", modalities="image")
    fns = objectives.make_objective_fns(model, config)
    encoder_inputs, _ = fns.prepare(batch, jax.random.key(0))
    assert np.all(np.asarray(encoder_inputs["text_mask"]).sum(1) == 2)


def test_pixel_targets_do_not_magnify_flat_patches():
    rng = np.random.default_rng(0)
    flat = 0.3 + 0.005 * rng.standard_normal((1, 8, 8, 3))  # JPEG-like noise only.
    textured = np.where(np.arange(8)[None, :, None, None] % 2 == 0, 0.8, -0.8) * np.ones(
        (1, 8, 8, 3)
    )  # Stripes.
    images = jnp.asarray(np.concatenate([flat, textured], axis=2), jnp.float32)  # 2 patches.
    targets = np.asarray(objectives.normalized_patch_pixels(images, 8, variance_eps=0.01))
    assert targets.shape == (1, 2, 8 * 8 * 3)
    assert np.abs(targets[0, 0]).max() < 0.2  # The flat patch stays near zero.
    assert 0.95 < targets[0, 1].std() < 1.0  # The striped patch keeps its contrast.
    np.testing.assert_allclose(targets[0].mean(axis=-1), 0.0, atol=1e-5)
    magnified = np.asarray(objectives.normalized_patch_pixels(images, 8, variance_eps=1e-6))
    assert magnified[0, 0].std() > 0.95  # MAE's epsilon: noise at unit variance.


def test_info_nce_rewards_each_anchor_finding_its_own_view():
    rng = np.random.default_rng(0)
    anchors = rng.standard_normal((8, 16)).astype(np.float32)
    anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)
    ones = jnp.ones((8,))
    aligned, accuracy = objectives.info_nce(anchors, anchors, ones, ones, 0.05)
    shuffled, shuffled_accuracy = objectives.info_nce(anchors, anchors[::-1], ones, ones, 0.05)
    assert float(accuracy) == 1.0 and float(shuffled_accuracy) < 0.5
    assert float(aligned) < 0.1 < float(shuffled)
    # A row without the view (weight 0) is neither scored nor a negative of the others.
    views = anchors.copy()
    views[3] = -anchors[3]
    weights = jnp.ones((8,)).at[3].set(0.0)
    masked, _ = objectives.info_nce(anchors, views, ones, weights, 0.05)
    kept = [row for row in range(8) if row != 3]
    reference, _ = objectives.info_nce(
        anchors[kept], anchors[kept], jnp.ones((7,)), jnp.ones((7,)), 0.05
    )
    assert float(masked) == pytest.approx(float(reference), rel=1e-5)


def test_hard_negative_weighting_counts_the_nearest_negative_most():
    # Anchor 0's nearest negative is view 1; view 2 is far. Moving view 1 even closer raises
    # the reweighted loss more than the plain one.
    anchors = np.eye(3, dtype=np.float32)
    near = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]], np.float32)
    ones = jnp.ones((3,))
    plain, _ = objectives.info_nce(anchors, near, ones, ones, 0.5)
    hard, _ = objectives.info_nce(anchors, near, ones, ones, 0.5, hard_negative_beta=5.0)
    assert float(hard) > float(plain)
    uniform, _ = objectives.info_nce(anchors, anchors, ones, ones, 0.5, hard_negative_beta=5.0)
    plain_uniform, _ = objectives.info_nce(anchors, anchors, ones, ones, 0.5)
    # Negatives that are all equally far get equal weights: the loss is the plain one.
    assert float(uniform) == pytest.approx(float(plain_uniform), rel=1e-5)


def test_title_only_and_image_only_views_equal_the_masked_full_sequence():
    config, model, params, batch = _setup()
    full = model.apply(
        {"params": params},
        batch["text_tokens"],
        batch["text_mask"],
        batch["image"],
        jnp.zeros_like(batch["has_image"]),
        method=ItemModel.encode,
    )["cls_state"]
    title_only = model.apply(
        {"params": params},
        batch["text_tokens"],
        batch["text_mask"],
        None,
        jnp.zeros_like(batch["has_image"]),
        method=ItemModel.encode,
    )["cls_state"]
    np.testing.assert_allclose(np.asarray(title_only), np.asarray(full), atol=1e-5)
    empty = batch_lib.remove_titles(batch["text_tokens"], batch["text_mask"])
    masked = model.apply(
        {"params": params},
        empty["text_tokens"],
        empty["text_mask"],
        batch["image"],
        batch["has_image"],
        method=ItemModel.encode,
    )["cls_state"]
    short = model.apply(
        {"params": params},
        empty["text_tokens"][:, :2],
        empty["text_mask"][:, :2],
        batch["image"],
        batch["has_image"],
        method=ItemModel.encode,
    )["cls_state"]
    np.testing.assert_allclose(np.asarray(short), np.asarray(masked), atol=1e-5)


@pytest.mark.slow
def test_contrastive_objective_adds_its_loss_and_trains_the_projection():
    config, model, params, batch = _setup(objectives="itm,mlm,mim,gmlm,gmim,contrastive")
    fns = objectives.make_objective_fns(model, config)
    (total, metrics), grads = jax.value_and_grad(fns.loss, has_aux=True)(
        params, batch, jax.random.key(0)
    )
    assert float(metrics["contrastive_loss"]) > 0
    assert 0.0 <= float(metrics["contrastive_accuracy"]) <= 1.0
    item_only = sum(
        float(metrics[f"{name}_loss"]) for name in ("itm", "mlm", "mim", "gmlm", "gmim")
    )
    assert float(total) == pytest.approx(item_only + float(metrics["contrastive_loss"]), rel=1e-5)
    assert float(jnp.abs(grads["embedding_projection"]["kernel"]).max()) > 0
    plain_config = _setup(objectives="itm,mlm,mim,gmlm,gmim")[0]  # They never read it.
    _, plain_grads = jax.value_and_grad(
        objectives.make_objective_fns(model, plain_config).loss, has_aux=True
    )(params, batch, jax.random.key(0))
    assert float(jnp.abs(plain_grads["embedding_projection"]["kernel"]).max()) == 0.0


def test_shuffled_titles_keep_their_pieces_and_special_slots():
    from item_jax import augment  # pylint: disable=g-import-not-at-top

    _, _, _, batch = _setup()
    tokens, mask = batch["text_tokens"], batch["text_mask"]
    shuffled = np.asarray(augment.shuffle_title_pieces(jax.random.key(0), tokens, mask))
    tokens = np.asarray(tokens)
    np.testing.assert_array_equal(shuffled[:, 0], tokens[:, 0])  # [CLS] first.
    np.testing.assert_array_equal(shuffled[np.asarray(mask) == 0], 0)  # Padding stays.
    np.testing.assert_array_equal(np.sort(shuffled, axis=1), np.sort(tokens, axis=1))
    assert (shuffled != tokens).any()


def test_random_resized_crops_keep_shape_and_zoom_in():
    from item_jax import augment  # pylint: disable=g-import-not-at-top

    images = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)), jnp.float32)
    same = augment.random_resized_crops(jax.random.key(0), images, 1.0 - 1e-6)
    assert same.shape == images.shape
    flipped = np.asarray(images)[:, :, ::-1]
    for row in range(4):  # Scale 1: the image itself, mirrored or not.
        assert (
            min(
                np.abs(np.asarray(same[row]) - np.asarray(images[row])).max(),
                np.abs(np.asarray(same[row]) - flipped[row]).max(),
            )
            < 1e-3
        )
    cropped = augment.random_resized_crops(jax.random.key(1), images, 0.5)
    assert np.abs(np.asarray(cropped) - np.asarray(images)).max() > 0.1


def test_token_prediction_is_optax_cross_entropy_and_the_argmax_accuracy():
    logits = jax.random.normal(jax.random.key(0), (3, 5, 50)) * 4
    targets = jax.random.randint(jax.random.key(1), (3, 5), 0, 50)
    targets = targets.at[0, :2].set(logits[0, :2].argmax(-1))  # Some predictions right.
    weights = jnp.ones((3, 5)).at[2].set(0.0)
    loss, accuracy = objectives._token_prediction(logits, targets, weights)
    reference = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    np.testing.assert_allclose(loss, (reference * weights).sum() / weights.sum(), rtol=1e-6)
    right = (logits.argmax(-1) == targets).astype(jnp.float32)
    np.testing.assert_allclose(accuracy, (right * weights).sum() / weights.sum(), rtol=1e-6)
    assert float(accuracy) > 0
    ours = jax.grad(lambda x: objectives._token_prediction(x, targets, weights)[0])(logits)
    theirs = jax.grad(
        lambda x: (
            (optax.softmax_cross_entropy_with_integer_labels(x, targets) * weights).sum()
            / weights.sum()
        )
    )(logits)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def test_title_image_cross_view_adds_a_clip_term_that_reaches_the_image_path():
    """`contrastive.cross_views=title-image` sets the two views against each other as well."""
    base = dict(
        objectives="mlm,contrastive",
        **{"contrastive.views": "title,image", "contrastive.cross_views": ""},
    )
    config, model, params, batch = _setup(**base)
    cross_config = _setup(
        **{**base, "contrastive.cross_views": "title-image", "contrastive.cross_view_weight": 2.0}
    )[0]
    rng = jax.random.key(0)

    def contrastive(config, params):
        return objectives.make_objective_fns(model, config).loss(params, batch, rng)[1][
            "contrastive_loss"
        ]

    plain, crossed = float(contrastive(config, params)), float(contrastive(cross_config, params))

    # The extra term is the InfoNCE between the title-only and image-only embeddings.
    def embedded(view):
        if view == "title":
            inputs = dict(
                text_tokens=batch["text_tokens"],
                text_mask=batch["text_mask"],
                images=None,
                has_image=jnp.zeros_like(batch["has_image"]),
            )
        else:
            empty = batch_lib.remove_titles(batch["text_tokens"][:, :2], batch["text_mask"][:, :2])
            inputs = dict(
                text_tokens=empty["text_tokens"],
                text_mask=empty["text_mask"],
                images=batch["image"],
                has_image=batch["has_image"],
            )
        cls = model.apply({"params": params}, **inputs, method=ItemModel.encode)["cls_state"]
        return model.apply({"params": params}, cls, method=ItemModel.embed_product)

    ones = jnp.ones((16,))
    clip, _ = objectives.info_nce(
        embedded("title"),
        embedded("image"),
        ones,
        ones,
        config.contrastive.temperature,
        config.contrastive.hard_negative_beta,
    )
    assert crossed == pytest.approx(plain + 2.0 * float(clip), rel=1e-4)

    # Without the pair, the stem's patch embedding gets gradient only through the image view's
    # match with the listing; the pair adds the title's pull on the photo.
    grads = jax.grad(lambda p: contrastive(cross_config, p) - contrastive(config, p))(params)
    assert float(jnp.abs(grads["conv_stem"]["conv_0"]["kernel"]).max()) > 0
    assert float(jnp.abs(grads["token_embedding"]["embedding"]).max()) > 0


def test_a_cross_only_view_is_matched_through_its_pair_alone():
    """`contrastive.cross_only_views=image`: the image view is matched with the title view only."""
    base = dict(
        objectives="mlm,contrastive",
        **{"contrastive.views": "title,image", "contrastive.cross_views": "title-image"},
    )
    config, model, params, batch = _setup(**base)
    title_only = _setup(**{**base, "contrastive.cross_only_views": "image"})[0]
    without_pair = _setup(
        **{**base, "contrastive.cross_only_views": "image", "contrastive.cross_views": ""}
    )
    rng = jax.random.key(0)

    def contrastive(config, params):
        return objectives.make_objective_fns(model, config).loss(params, batch, rng)[1][
            "contrastive_loss"
        ]

    both, title_listing = float(contrastive(config, params)), float(contrastive(title_only, params))
    assert title_listing != pytest.approx(both, rel=1e-3)
    # The image view still learns, through the pair alone.
    grads = jax.grad(lambda p: contrastive(title_only, p))(params)
    assert float(jnp.abs(grads["conv_stem"]["conv_0"]["kernel"]).max()) > 0
    from item_jax import config_check  # pylint: disable=g-import-not-at-top

    with pytest.raises(config_check.ConfigError, match="matched with nothing"):
        config_check.check_config(without_pair[0])
    with pytest.raises(config_check.ConfigError, match="must name views"):
        config_check.check_config(
            small_config(**{**base, "contrastive.cross_only_views": "remask"})
        )
    # The default leaves every view matched with the listing, whichever views are on.
    config_check.check_config(
        small_config(
            **{
                "objectives": "mim,contrastive",
                "contrastive.views": "image",
                "contrastive.cross_views": "",
            }
        )
    )


@pytest.mark.parametrize(
    "cross_views, message",
    [
        ("title-audio", "must join two different views"),
        ("title-title", "must join two different views"),
        ("title", "FIRST-SECOND"),
    ],
)
def test_cross_views_are_checked_at_start_up(cross_views, message):
    from item_jax import config_check  # pylint: disable=g-import-not-at-top

    with pytest.raises(config_check.ConfigError, match=message):
        config_check.check_config(
            small_config(
                **{"objectives": "mlm,contrastive", "contrastive.cross_views": cross_views}
            )
        )
