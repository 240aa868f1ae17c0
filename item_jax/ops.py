"""The model's products, broadcast adds and GELU, written the way each backend runs best.

Every matrix product in `item_jax/model.py` goes through `dense` (the dense layers and
the attention's query/key/value and output projections, their kernels viewed as
[width, heads * head_dim]), `einsum` (other two-operand products) or `attention`; biases
and position/modality embeddings are added through `add_broadcast`, GELU is `gelu`. On
accelerators they are the plain `jax.lax.dot_general`, `jnp.einsum`,
`jax.nn.dot_product_attention`, `+` and `jax.nn.gelu`. On the CPU backend (XLA CPU) they
take forms XLA runs faster, computing the same thing (bf16 products rounded once, at the
end; docs/performance.md has the measurements):

* float32 dense layers: the output features are split into column groups (a rank-3 kernel
  view), and the weight gradient is written as inputs^T @ output_gradient. With autodiff's
  own ordering, XLA copied the wide output gradient into a transposed array.
* bfloat16 operands: XLA CPU runs a bf16 x bf16 product on the CPU's matrix units (where it
  has them) only when the product accumulates into float32 (`preferred_element_type`);
  a product with a bf16 result converts both operands to float32 first, and runs at the
  float32 rate or below. So every bf16 product here accumulates in float32 and rounds its
  result once, in the backward pass too: custom VJPs hand the backward products a bf16
  cotangent, where autodiff would hand them a float32 one, which runs in float32.
* GELU of a bf16 array: `nn.gelu` rounds each intermediate to bf16 and keeps four of them
  for the backward pass; `gelu` computes in float32 from the input alone, forward and
  backward.
* The gradient of a broadcast add (a bias, a position embedding) sums the bf16 cotangent
  over the batch. Autodiff sums in bf16, which XLA CPU lowers to a slow windowed reduction;
  `add_broadcast` sums in float32, which XLA CPU reduces fast and which is also the more
  accurate sum.
"""

import functools

import jax
import jax.numpy as jnp

# The output features of a float32 dense layer are split into this many column groups on
# CPU: with a rank-3 kernel view the products of a [batch, length, features] input stay on
# XLA CPU's fast matmul path.
DENSE_COLUMN_GROUPS = 4


def _on_cpu() -> bool:
    return jax.default_backend() == "cpu"


def _bfloat16(*arrays) -> bool:
    return all(array.dtype == jnp.bfloat16 for array in arrays)


def _f32_einsum(equation, a, b):
    return jnp.einsum(equation, a, b, preferred_element_type=jnp.float32)


# --- Dense layers ----------------------------------------------------------------------


def dense(inputs, kernel):
    """inputs [..., in] @ kernel [in, out] (both of one dtype) -> [..., out] in that dtype."""
    if inputs.dtype != kernel.dtype:
        raise ValueError(f"dense: inputs {inputs.dtype} and kernel {kernel.dtype} differ")
    if _on_cpu() and inputs.ndim >= 2 and _bfloat16(inputs):
        return _bfloat16_dense(inputs, kernel)
    if (
        _on_cpu()
        and inputs.ndim >= 3
        and kernel.shape[1] % DENSE_COLUMN_GROUPS == 0
        and inputs.dtype == jnp.float32
    ):
        return _grouped_dense(DENSE_COLUMN_GROUPS, inputs, kernel)
    return jax.lax.dot_general(inputs, kernel, (((inputs.ndim - 1,), (0,)), ((), ())))


def _column_groups(kernel, groups):
    """The [in, out] kernel viewed as [in, groups, out / groups]."""
    in_features, out_features = kernel.shape
    return kernel.reshape(in_features, groups, out_features // groups)


def _grouped_product(groups, inputs, kernel):
    grouped = jnp.einsum("...d,dgk->...gk", inputs, _column_groups(kernel, groups))
    return grouped.reshape(inputs.shape[:-1] + (kernel.shape[1],))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _grouped_dense(groups, inputs, kernel):
    """float32 inputs [..., in] @ kernel [in, out]; see the module docstring.

    The gradient is the plain matmul's. The rule writes the weight gradient as
    inputs^T @ output_gradient (the rows of both contracted), which XLA CPU reads where the
    operands lie.
    """
    return _grouped_product(groups, inputs, kernel)


def _grouped_dense_forward(groups, inputs, kernel):
    return _grouped_product(groups, inputs, kernel), (inputs, kernel)


def _grouped_dense_backward(groups, residuals, output_gradient):
    inputs, kernel = residuals
    in_features, out_features = kernel.shape
    inputs_gradient = jnp.einsum(
        "...gk,dgk->...d",
        output_gradient.reshape(output_gradient.shape[:-1] + (groups, -1)),
        _column_groups(kernel, groups),
    )
    kernel_gradient = jax.lax.dot_general(
        inputs.reshape(-1, in_features),
        output_gradient.reshape(-1, out_features),
        (((0,), (0,)), ((), ())),
    )
    return inputs_gradient.astype(inputs.dtype), kernel_gradient.astype(kernel.dtype)


_grouped_dense.defvjp(_grouped_dense_forward, _grouped_dense_backward)


def _row_blocks(array):
    """[..., rows, features] as [blocks, rows, features] (a 2-D array: one block)."""
    return array[None] if array.ndim == 2 else array.reshape((-1,) + array.shape[-2:])


@jax.custom_vjp
def _bfloat16_dense(inputs, kernel):
    """bf16 inputs [..., in] @ kernel [in, out], accumulated in float32, a bf16 result."""
    rows = inputs.reshape(-1, inputs.shape[-1])
    product = jax.lax.dot_general(
        rows, kernel, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32
    )
    return product.astype(inputs.dtype).reshape(inputs.shape[:-1] + (kernel.shape[1],))


def _bfloat16_dense_forward(inputs, kernel):
    return _bfloat16_dense(inputs, kernel), (inputs, kernel)


def _bfloat16_dense_backward(residuals, output_gradient):
    inputs, kernel = residuals
    output_gradient = output_gradient.astype(inputs.dtype)
    gradient_rows = output_gradient.reshape(-1, kernel.shape[1])
    inputs_gradient = jax.lax.dot_general(
        gradient_rows, kernel, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32
    )
    # The weight gradient contracts two row axes (the inputs' own [batch, length], or a unit
    # axis and the rows): XLA CPU then copies the inputs into a transposed array and runs a
    # matrix-unit product. As a plain rows-contracting product it converts both operands to
    # float32 (several times slower); over the rows flattened into one axis its transposed
    # copy is much slower than over [blocks, rows, features] (a power-of-two stride).
    # XLA transposes the operand whose axis leads the result. For a layer that narrows
    # (in > out) the output gradient is the smaller one: the product is taken as
    # gradient^T @ inputs and transposed after (the barrier keeps XLA from folding the
    # transpose back into the product), faster for a narrowing layer such as the MLP's
    # output (docs/performance.md).
    if kernel.shape[0] > kernel.shape[1]:
        kernel_gradient = jax.lax.optimization_barrier(
            _f32_einsum("crk,crd->kd", _row_blocks(output_gradient), _row_blocks(inputs))
        ).T
    else:
        kernel_gradient = _f32_einsum(
            "crd,crk->dk", _row_blocks(inputs), _row_blocks(output_gradient)
        )
    return (
        inputs_gradient.astype(inputs.dtype).reshape(inputs.shape),
        kernel_gradient.astype(kernel.dtype),
    )


_bfloat16_dense.defvjp(_bfloat16_dense_forward, _bfloat16_dense_backward)


# --- Two-operand einsums ---------------------------------------------------------------


def einsum(equation: str, a, b, out_dtype=None):
    """`jnp.einsum(equation, a, b)`, its result in `out_dtype` (default: `a`'s dtype).

    Products accumulate in float32 wherever the operands are bf16. The equation names every
    axis (no "...") and none is summed within one operand alone.
    """
    out_dtype = jnp.dtype(out_dtype or a.dtype)
    if _on_cpu() and _bfloat16(a, b):
        _check_equation(equation)
        return _bfloat16_einsum(equation, out_dtype, a, b)
    return jnp.einsum(equation, a, b, preferred_element_type=out_dtype)


def _einsum_axes(equation) -> tuple[str, str, str]:
    """ "ab,bc->ac" -> ("ab", "bc", "ac")."""
    inputs, _, out_axes = equation.partition("->")
    a_axes, _, b_axes = inputs.partition(",")
    return a_axes, b_axes, out_axes


def _check_equation(equation):
    a_axes, b_axes, out_axes = _einsum_axes(equation)
    if (
        "." in equation
        or not out_axes
        or not b_axes
        or any(
            axis not in out_axes + other
            for axes, other in ((a_axes, b_axes), (b_axes, a_axes))
            for axis in axes
        )
    ):
        raise ValueError(
            f"einsum {equation!r}: two operands with named axes, each axis in the "
            "result or in the other operand"
        )


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _bfloat16_einsum(equation, out_dtype, a, b):
    return _f32_einsum(equation, a, b).astype(out_dtype)


def _bfloat16_einsum_forward(equation, out_dtype, a, b):
    return _bfloat16_einsum(equation, out_dtype, a, b), (a, b)


def _bfloat16_einsum_backward(equation, out_dtype, residuals, output_gradient):
    a, b = residuals
    a_axes, b_axes, out_axes = _einsum_axes(equation)
    gradient = output_gradient.astype(a.dtype)
    a_gradient = _ordered_f32_einsum(a_axes, (gradient, out_axes), (b, b_axes))
    b_gradient = _ordered_f32_einsum(b_axes, (a, a_axes), (gradient, out_axes))
    return a_gradient.astype(a.dtype), b_gradient.astype(b.dtype)


def _ordered_f32_einsum(result_axes, first, second):
    """A float32-accumulated product, its operands ordered as XLA CPU's matrix path needs.

    The operand whose own (not shared) axes come first in the result goes first. In the
    other order XLA CPU left some batched bf16 products, such as the attention
    key gradient "bthk,bhts->bshk", to a kernel that cannot run bf16 x bf16 -> float32.
    """

    def first_own_axis(axes, other_axes):
        return min(
            (result_axes.index(axis) for axis in axes if axis not in other_axes),
            default=len(result_axes),
        )

    (x, x_axes), (y, y_axes) = first, second
    if first_own_axis(y_axes, x_axes) < first_own_axis(x_axes, y_axes):
        (x, x_axes), (y, y_axes) = (y, y_axes), (x, x_axes)
    return _f32_einsum(f"{x_axes},{y_axes}->{result_axes}", x, y)


_bfloat16_einsum.defvjp(_bfloat16_einsum_forward, _bfloat16_einsum_backward)


# --- Attention -------------------------------------------------------------------------


def attention(query, key, value, key_mask, implementation=None):
    """Softmax attention of query/key/value [B, T, H, K] over the keys where `key_mask` [B, T].

    On CPU the two products go through `einsum` (float32 scores and softmax; with bf16
    operands a bf16 weighted sum): in float32 the step is faster than through
    `jax.nn.dot_product_attention`, whose grouped-query vmap left a slow reduction in the
    backward pass (docs/performance.md). Everywhere else through
    `jax.nn.dot_product_attention` (`implementation`: None lets JAX choose, "xla", or
    "cudnn" on NVIDIA GPUs).
    """
    mask = key_mask[:, None, None, :].astype(bool)  # [B, 1, 1, T]: every query, valid keys.
    if not (_on_cpu() and implementation in (None, "xla")):
        return jax.nn.dot_product_attention(
            query, key, value, mask=mask, implementation=implementation
        )
    scale = query.shape[-1] ** -0.5
    scores = einsum("bthk,bshk->bhts", query, key, out_dtype=jnp.float32) * scale
    scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    probabilities = jax.nn.softmax(scores, axis=-1).astype(value.dtype)
    return einsum("bhts,bshk->bthk", probabilities, value)


# --- Activations -----------------------------------------------------------------------


def gelu(x, approximate: bool = True):
    """`nn.gelu(x, approximate)`; for bf16 on CPU computed in float32 from `x` alone."""
    if _on_cpu() and _bfloat16(x):
        return _bfloat16_gelu(approximate, x)
    return jax.nn.gelu(x, approximate=approximate)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _bfloat16_gelu(approximate, x):
    return jax.nn.gelu(x.astype(jnp.float32), approximate=approximate).astype(x.dtype)


def _bfloat16_gelu_forward(approximate, x):
    return _bfloat16_gelu(approximate, x), x


def _bfloat16_gelu_backward(approximate, x, output_gradient):
    _, pullback = jax.vjp(
        functools.partial(jax.nn.gelu, approximate=approximate), x.astype(jnp.float32)
    )
    (x_gradient,) = pullback(output_gradient.astype(jnp.float32))
    return (x_gradient.astype(x.dtype),)


_bfloat16_gelu.defvjp(_bfloat16_gelu_forward, _bfloat16_gelu_backward)


# --- Broadcast adds --------------------------------------------------------------------


def add_broadcast(x, parameter):
    """x + parameter (its shape x's trailing axes, broadcast over the rest), in x's dtype."""
    if parameter.shape != x.shape[x.ndim - parameter.ndim :]:
        raise ValueError(
            f"add_broadcast: parameter {parameter.shape} is not the trailing shape of {x.shape}"
        )
    if _on_cpu() and _bfloat16(x):
        return _bfloat16_add_broadcast(x, parameter)
    return x + parameter.astype(x.dtype)


@jax.custom_vjp
def _bfloat16_add_broadcast(x, parameter):
    return x + parameter.astype(x.dtype)


def _bfloat16_add_broadcast_forward(x, parameter):
    return _bfloat16_add_broadcast(x, parameter), parameter


def _bfloat16_add_broadcast_backward(parameter, output_gradient):
    leading = tuple(range(output_gradient.ndim - parameter.ndim))
    parameter_gradient = jnp.sum(output_gradient, axis=leading, dtype=jnp.float32)
    return output_gradient, parameter_gradient.astype(parameter.dtype)


_bfloat16_add_broadcast.defvjp(_bfloat16_add_broadcast_forward, _bfloat16_add_broadcast_backward)
