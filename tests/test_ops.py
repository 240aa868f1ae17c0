"""The model's products on CPU: the plain results and gradients, in XLA CPU's fast forms.

float32: dense layers compute the plain matmul with a weight gradient XLA lowers without
transposed copies. bfloat16: every product accumulates in float32 on the matrix path, the
broadcast adds' gradients sum in float32, and the results match float32 within bf16's
rounding.
"""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_config

from item_jax import batch as batch_lib
from item_jax import model as model_lib
from item_jax import ops, sharding, train_step

BF16 = jnp.bfloat16


def _normal(seed, shape, dtype=jnp.float32):
    return jax.random.normal(jax.random.key(seed), shape).astype(dtype)


def _grads(function, *args):
    """Gradients of a fixed random projection of the result (linear: bf16 rounding of the
    result does not reach the cotangent)."""
    shape = jax.eval_shape(function, *args).shape
    weights = _normal(99, shape)
    return jax.grad(
        lambda *a: jnp.sum(function(*a).astype(jnp.float32) * weights),
        argnums=tuple(range(len(args))),
    )(*args)


def _assert_close_to_float32(ours, reference, tolerance):
    """bf16 results against float32 ones, relative to the reference's scale."""
    ours = np.asarray(jnp.asarray(ours, jnp.float32))
    reference = np.asarray(reference)
    scale = np.abs(reference).max()
    assert np.abs(ours - reference).max() <= tolerance * scale, (
        np.abs(ours - reference).max(),
        scale,
    )


def test_float32_dense_equals_the_plain_matmul_and_so_do_its_gradients():
    inputs, kernel = _normal(0, (2, 5, 8)), _normal(1, (8, 12))
    plain = lambda x, k: jnp.einsum("btd,dk->btk", x, k)
    np.testing.assert_allclose(
        ops.dense(inputs, kernel), plain(inputs, kernel), rtol=1e-5, atol=1e-5
    )
    for a, b in zip(_grads(ops.dense, inputs, kernel), _grads(plain, inputs, kernel)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # Widths that do not split into the column groups, and 2-D inputs, take the plain matmul.
    odd = _normal(2, (8, 7))
    np.testing.assert_allclose(ops.dense(inputs, odd), plain(inputs, odd), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ops.dense(inputs[:, 0], kernel), inputs[:, 0] @ kernel)
    with pytest.raises(ValueError, match="differ"):
        ops.dense(inputs, kernel.astype(BF16))


def test_the_float32_mlp_weight_gradient_copies_no_transposed_array():
    # Autodiff's own weight gradient of a [batch, length, in] input made XLA's CPU backend
    # copy the wide output gradient into a transposed [out, rows] array and the
    # product back into the kernel's layout; the custom rule's inputs^T @ gradient reads
    # both operands where they lie (docs/performance.md).
    dense = model_lib._dense(1024, ("embed", "mlp"), jnp.float32, "mlp_in")
    inputs = jnp.ones((8, 96, 256))
    params = nn.unbox(dense.init(jax.random.key(0), inputs))
    compiled = (
        jax.jit(jax.grad(lambda p, x: jnp.sum(dense.apply(p, x) ** 2)))
        .lower(params, inputs)
        .compile()
    )
    entry = compiled.as_text().split("ENTRY", 1)[1]
    assert "f32[1024,768]" not in entry, entry
    assert not re.search(r"%[\w.]*(copy|transpose)[\w.]* = ", entry), entry


@pytest.mark.parametrize(
    "shape, out_features", [((2, 6, 16), 24), ((12, 16), 24), ((2, 6, 16), 8)]
)  # Widening, narrowing.
def test_bfloat16_dense_matches_float32_and_so_do_its_gradients(shape, out_features):
    inputs, kernel = _normal(0, shape), _normal(1, (16, out_features))
    plain = lambda x, k: jnp.einsum("...d,dk->...k", x, k)
    low = (inputs.astype(BF16), kernel.astype(BF16))
    result = ops.dense(*low)
    assert result.dtype == BF16
    _assert_close_to_float32(result, plain(inputs, kernel), 2e-2)
    for ours, reference, operand in zip(
        _grads(ops.dense, *low), _grads(plain, inputs, kernel), low
    ):
        assert ours.dtype == BF16 and ours.shape == operand.shape
        _assert_close_to_float32(ours, reference, 3e-2)


@pytest.mark.parametrize(
    "equation, a_shape, b_shape",
    [
        ("btd,dhk->bthk", (2, 6, 16), (16, 4, 8)),  # Attention projections.
        ("bthk,bshk->bhts", (2, 6, 4, 8), (2, 6, 4, 8)),  # Scores.
        ("bhts,bshk->bthk", (2, 4, 6, 6), (2, 6, 4, 8)),  # The weighted sum.
        ("bkd,vd->bkv", (2, 3, 16), (40, 16)),  # Vocabulary logits.
    ],
)
def test_bfloat16_einsum_matches_float32_and_so_do_its_gradients(equation, a_shape, b_shape):
    a, b = _normal(0, a_shape), _normal(1, b_shape)
    plain = lambda x, y: jnp.einsum(equation, x, y)
    low = (a.astype(BF16), b.astype(BF16))
    for out_dtype in (None, jnp.float32):
        ours = lambda x, y, out_dtype=out_dtype: ops.einsum(equation, x, y, out_dtype=out_dtype)
        assert ours(*low).dtype == (out_dtype or BF16)
        _assert_close_to_float32(ours(*low), plain(a, b), 2e-2)
        for got, reference in zip(_grads(ours, *low), _grads(plain, a, b)):
            assert got.dtype == BF16
            _assert_close_to_float32(got, reference, 3e-2)
    with pytest.raises(ValueError, match="named axes"):
        ops.einsum("btd,dk->bt", *low[:1], low[0][0])  # "d" and "k" summed within one operand.


def test_bfloat16_attention_matches_float32_dot_product_attention():
    query, key, value = (_normal(seed, (2, 7, 4, 8)) for seed in range(3))
    key_mask = jnp.array([[1] * 7, [1] * 4 + [0] * 3], jnp.int32)
    reference = lambda q, k, v: jax.nn.dot_product_attention(
        q, k, v, mask=key_mask[:, None, None, :].astype(bool)
    )
    ours = lambda q, k, v: ops.attention(q, k, v, key_mask)
    low = tuple(x.astype(BF16) for x in (query, key, value))
    _assert_close_to_float32(ours(*low), reference(query, key, value), 2e-2)
    for got, expected in zip(_grads(ours, *low), _grads(reference, query, key, value)):
        _assert_close_to_float32(got, expected, 4e-2)
    # Masked keys get no weight: changing their values changes nothing.
    changed = value.at[1, 4:].set(100.0).astype(BF16)
    np.testing.assert_array_equal(ours(low[0], low[1], changed), ours(*low))


def test_float32_attention_on_cpu_is_the_plain_einsum_pair_with_the_same_values():
    query, key, value = (_normal(seed, (2, 7, 4, 8)) for seed in range(3))
    key_mask = jnp.array([[1] * 7, [1] * 4 + [0] * 3], jnp.int32)
    reference = lambda q, k, v: jax.nn.dot_product_attention(
        q, k, v, mask=key_mask[:, None, None, :].astype(bool)
    )
    ours = lambda q, k, v: ops.attention(q, k, v, key_mask)
    np.testing.assert_allclose(ours(query, key, value), reference(query, key, value), atol=1e-6)
    for got, expected in zip(_grads(ours, query, key, value), _grads(reference, query, key, value)):
        np.testing.assert_allclose(got, expected, atol=1e-5)
    # Not through jax.nn.dot_product_attention's grouped-query layout ([B, T, K, G, H]
    # under a vmap), whose backward reduction slowed the step on CPU (docs/performance.md).
    gradient = jax.make_jaxpr(lambda q, k, v: _grads(ours, q, k, v))(query, key, value)
    ranks = {var.aval.ndim for equation in gradient.jaxpr.eqns for var in equation.outvars}
    assert max(ranks) == 4, ranks


def test_bfloat16_gelu_and_broadcast_add_match_float32():
    x = _normal(0, (3, 5, 16)) * 3
    for approximate in (True, False):
        ours = lambda v, approximate=approximate: ops.gelu(v, approximate)
        reference = lambda v, approximate=approximate: jax.nn.gelu(v, approximate=approximate)
        _assert_close_to_float32(ours(x.astype(BF16)), reference(x), 1e-2)
        _assert_close_to_float32(_grads(ours, x.astype(BF16))[0], _grads(reference, x)[0], 2e-2)
    bias = _normal(1, (5, 16))
    ours_grads = _grads(ops.add_broadcast, x.astype(BF16), bias)
    reference_grads = _grads(lambda v, b: v + b, x, bias)
    assert ours_grads[1].dtype == jnp.float32  # The parameter's gradient in its own dtype.
    for got, expected in zip(ours_grads, reference_grads):
        _assert_close_to_float32(got, expected, 2e-2)
    with pytest.raises(ValueError, match="trailing shape"):
        ops.add_broadcast(x, bias[:, :1])


def _dot_operand_types(hlo, line):
    operands = re.search(r" dot\(([^)]*)\)", line).group(1)
    types = dict(re.findall(r"%([\w.\-]+) = (\w+)\[", hlo))
    return {types.get(name.strip().lstrip("%")) for name in operands.split(",")}


def test_a_bfloat16_dense_layer_gradient_is_bf16_products_and_a_plain_sum():
    # Before: XLA CPU converted the bf16 operands of every product to float32 (the matrix
    # units unused) and lowered the bias gradient's bf16 sum to a slow windowed reduction.
    dense = model_lib._dense(1024, ("embed", "mlp"), BF16, "mlp_in")
    inputs = jnp.ones((8, 96, 256), BF16)
    params = nn.unbox(dense.init(jax.random.key(0), inputs))
    hlo = (
        jax.jit(jax.grad(lambda p, x: jnp.sum(dense.apply(p, x).astype(jnp.float32) ** 2)))
        .lower(params, inputs)
        .compile()
        .as_text()
    )
    assert "reduce-window" not in hlo
    dots = [line for line in hlo.splitlines() if re.search(r" dot\(", line)]
    assert len(dots) == 2, dots  # The kernel's gradient, and the forward product.
    for line in dots:
        assert _dot_operand_types(hlo, line) == {"bf16"}, line


@pytest.mark.slow
def test_the_bfloat16_step_runs_every_encoder_product_on_bf16_operands_and_learns():
    config = small_config(**{"model.compute_dtype": "bfloat16"})
    mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])
    setup = train_step.build_train_setup(model_lib.model_from_config(config.model), config, mesh)
    step_fn = train_step.compile_train_step(setup, config)
    hlo = step_fn.as_text()
    encoder_dots = [
        line for line in hlo.splitlines() if re.search(r" dot\(", line) and "encode" in line
    ]
    assert len(encoder_dots) >= 2 * 6 * config.model.num_layers
    for line in encoder_dots:
        assert _dot_operand_types(hlo, line) == {"bf16"}, line
    state = setup.init_state(jax.random.key(0))
    batch = jax.device_put(
        batch_lib.random_batch(config.model, config.global_batch_size), setup.batch_sharding
    )
    losses = []
    for _ in range(8):
        state, metrics = step_fn(state, batch)
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0] - 0.5, losses


def test_the_residual_stream_stays_float32_under_bfloat16_compute():
    config = small_config(**{"model.compute_dtype": "bfloat16"})
    model = model_lib.model_from_config(config.model)
    batch = batch_lib.random_batch(config.model, 2)
    inputs = (batch["text_tokens"], batch["text_mask"], batch["image"], batch["has_image"])
    params = model.init(jax.random.key(0), *inputs)["params"]
    _, state = model.apply(
        {"params": params},
        *inputs,
        method=model_lib.ItemModel.encode,
        capture_intermediates=True,
        mutable=["intermediates"],
    )
    intermediates = state["intermediates"]
    for index in range(config.model.num_layers):
        block = intermediates[f"block_{index}"]
        assert block["__call__"][0].dtype == jnp.float32
        # Inside the block, the products run in the compute dtype.
        assert block["mlp_in"]["__call__"][0].dtype == BF16
