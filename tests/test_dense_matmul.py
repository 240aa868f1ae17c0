"""Dense layers compute the plain matmul, with a gradient XLA CPU lowers without transposed copies."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from item_jax import model as model_lib

PLAIN = (((2,), (0,)), ((), ()))


def test_grouped_matmul_equals_the_plain_one_and_so_do_its_gradients():
  inputs = jax.random.normal(jax.random.key(0), (2, 5, 8))
  kernel = jax.random.normal(jax.random.key(1), (8, 12))
  grouped = model_lib._dense_matmul(inputs, kernel, PLAIN)
  np.testing.assert_allclose(grouped, jax.lax.dot_general(inputs, kernel, PLAIN), rtol=1e-5,
                             atol=1e-5)
  def loss(matmul):
    return lambda x, k: jnp.sum(jnp.sin(matmul(x, k, PLAIN)))
  ours = jax.grad(loss(model_lib._dense_matmul), argnums=(0, 1))(inputs, kernel)
  plain = jax.grad(loss(jax.lax.dot_general), argnums=(0, 1))(inputs, kernel)
  for a, b in zip(ours, plain):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  # Widths that do not split into the groups, and 2-D inputs, take the plain matmul.
  odd = jax.random.normal(jax.random.key(2), (8, 7))
  np.testing.assert_allclose(model_lib._dense_matmul(inputs, odd, PLAIN),
                             jax.lax.dot_general(inputs, odd, PLAIN), rtol=1e-5, atol=1e-5)
  flat = inputs[:, 0]
  np.testing.assert_array_equal(model_lib._dense_matmul(flat, kernel, (((1,), (0,)), ((), ()))),
                                jax.lax.dot_general(flat, kernel, (((1,), (0,)), ((), ()))))


def test_the_mlp_weight_gradient_copies_no_transposed_array_on_cpu():
  # Autodiff's own weight gradient of a [batch, length, in] input made XLA's CPU backend
  # (jax 0.10.2) copy the wide output gradient into a transposed [out, rows] array and the
  # product back into the kernel's layout; the custom rule's inputs^T @ gradient reads
  # both operands where they lie (docs/performance.md).
  dense = model_lib._dense(1024, ("embed", "mlp"), jnp.float32, "mlp_in")
  inputs = jnp.ones((8, 96, 256))
  params = nn.unbox(dense.init(jax.random.key(0), inputs))
  compiled = jax.jit(jax.grad(lambda p, x: jnp.sum(dense.apply(p, x) ** 2))).lower(
      params, inputs).compile()
  entry = compiled.as_text().split("ENTRY", 1)[1]
  assert "f32[1024,768]" not in entry, entry
  assert not re.search(r"%[\w.]*(copy|transpose)[\w.]* = ", entry), entry
