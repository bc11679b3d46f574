"""compiler.jit: options at top level, plain jit inside other transformations.

JAX raises when a jit carrying compiler options is staged into another
computation, so library functions jitted by `compiler.jit` must still work
inside a user's jit, scan, grad, vmap and eval_shape. The options' effect on
a real step is checked in tests/reliability/numerics_test.py.
"""

import jax
import jax.numpy as jnp
import numpy as np

from rlcs_jax import compiler


def test_top_level_calls_compile_with_the_options():
  double = compiler.jit(lambda x: 2 * x)
  np.testing.assert_array_equal(double(jnp.arange(3.0)), [0.0, 2.0, 4.0])
  # The call compiled the jit that carries the options, not the plain one.
  assert double.top_level._cache_size() == 1  # pylint: disable=protected-access
  assert double.nested._cache_size() == 0  # pylint: disable=protected-access


def test_works_inside_other_transformations():
  double = compiler.jit(lambda x: 2 * x)
  x = jnp.arange(3.0)
  np.testing.assert_array_equal(jax.jit(lambda x: double(x) + 1)(x), 2 * x + 1)
  np.testing.assert_array_equal(jax.vmap(double)(x), 2 * x)
  np.testing.assert_array_equal(jax.grad(lambda x: double(x).sum())(x), 2.0)
  assert jax.eval_shape(double, x).shape == (3,)
  _, ys = jax.lax.scan(lambda c, x: (c, double(x)), 0.0, x)
  np.testing.assert_array_equal(ys, 2 * x)
  # The decorator form with static arguments, nested.
  scale = compiler.jit(lambda x, k: k * x, static_argnames=("k",))
  np.testing.assert_array_equal(jax.jit(lambda x: scale(x, k=3))(x), 3 * x)
