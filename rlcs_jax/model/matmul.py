"""Matmuls with compute-dtype inputs and float32 accumulation, per layout.

`dot` (einsum) and `matmul` (2-D, with a bf16 backward pass that stays on
XLA:CPU's bf16 path) take inputs in the compute dtype and accumulate in
float32; `dense` applies a weight matrix stored canonically ([in..., out...])
or output axes first ([out..., in...], the sampling layout of
`transformer.to_sampling_layout`), with the weights as the left operand for
few rows (`weights_left_matmul`). `transposed` is a transpose XLA:CPU
cannot fold back into the dot that consumes it.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


def dot(eq: str, x: Array, w: Array, dtype: Any) -> Array:
  """Matmul with inputs in the compute dtype and float32 accumulation."""
  return jnp.einsum(
      eq, x.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32
  )


# Up to this many rows, a matmul against output-major weights puts the
# weights on the left (decode steps); above it (prefill), x @ w^T runs as
# fast as the canonical x @ w and the weights-left form does not.
WEIGHTS_LEFT_MAX_ROWS = 32


def dense(
    x: Array, w: Array, n_contract: int, dtype: Any, output_major=False
) -> Array:
  """Contracts x's last `n_contract` dims with w's first ones, as one 2-D matmul.

  Flattening both sides to [rows, K] @ [K, cols] (free reshapes of row-major
  arrays) leaves XLA no room to pick a transposed weight layout: written as
  a multi-axis einsum, XLA:CPU copied the [N, H, D] output projection into
  [H, N, D] on every call, i.e. once per layer per decoded token. With
  `output_major`, w is stored [out..., in...] and x's last dims contract
  with w's last `n_contract` ones.
  """
  lead = x.shape[: x.ndim - n_contract]
  if not output_major:
    k = math.prod(w.shape[:n_contract])
    y = matmul(x.reshape(-1, k), w.reshape(k, -1), dtype)
    return y.reshape(*lead, *w.shape[n_contract:])
  out = w.shape[: w.ndim - n_contract]
  k = math.prod(w.shape[w.ndim - n_contract :])
  x_MK, w_NK = x.reshape(-1, k), w.reshape(-1, k)
  if x_MK.shape[0] <= WEIGHTS_LEFT_MAX_ROWS:
    y = weights_left_matmul(x_MK, w_NK, dtype)
  else:
    y = matmul(x_MK, w_NK, dtype, transpose_w=True)
  return y.reshape(*lead, *out)


def weights_left_matmul(x_MK: Array, w_NK: Array, dtype: Any) -> Array:
  """x @ w^T computed as (w @ x^T)^T: the weights are the dot's left operand.

  XLA folds a transpose of a dot's result into the dot by swapping its
  operands, which would put the weights back on the right; the select in
  between never changes a value (`y > inf` never holds, NaN included) but
  the compiler cannot fold it. Sampling only (no custom backward pass).
  """
  y_NM = _mm(w_NK.astype(dtype), x_MK.astype(dtype), (1, 1))
  return jnp.where(y_NM > jnp.inf, 0.0, y_NM).T


def matmul(x_MK: Array, w: Array, dtype: Any, transpose_w: bool = False):
  """x [M, K] @ w [K, N] (or w [N, K] transposed): compute-dtype inputs,
  float32 accumulation and output.

  In float32 this is a plain dot. With a narrower compute dtype (bfloat16)
  the backward pass is written out (`_mixed_matmul`): JAX's own transpose
  of a bf16 x bf16 -> f32 dot multiplies the float32 cotangent by a bf16
  operand, which XLA:CPU runs as a float32 matmul (the slow path the bf16
  forward avoided), and it rounds the weight gradient to bf16. Here both
  gradient matmuls take bf16 inputs with float32 accumulation, and the
  weight gradient stays float32.
  """
  if jnp.dtype(dtype) == jnp.float32:
    return _plain_matmul(x_MK, w, jnp.dtype(dtype), transpose_w)
  return _mixed_matmul(x_MK, w, jnp.dtype(dtype), transpose_w)


def _mm(a: Array, b: Array, contract: tuple[int, int]) -> Array:
  """2-D dot contracting a's axis contract[0] with b's axis contract[1]."""
  return jax.lax.dot_general(
      a,
      b,
      (((contract[0],), (contract[1],)), ((), ())),
      preferred_element_type=jnp.float32,
  )


def _plain_matmul(x_MK, w, dtype, transpose_w):
  return _mm(x_MK.astype(dtype), w.astype(dtype), (1, 1 if transpose_w else 0))


# The same forward, with the backward below.
_mixed_matmul = jax.custom_vjp(_plain_matmul, nondiff_argnums=(2, 3))


def _mixed_matmul_fwd(x_MK, w, dtype, transpose_w):
  xc, wc = x_MK.astype(dtype), w.astype(dtype)
  # The residuals are the compute-dtype operands (half the bytes of f32),
  # plus empty arrays that carry the primal dtypes for the cotangents.
  dtypes = (jnp.zeros((0,), x_MK.dtype), jnp.zeros((0,), w.dtype))
  return _plain_matmul(xc, wc, dtype, transpose_w), (xc, wc, dtypes)


def _mixed_matmul_bwd(dtype, transpose_w, res, g_MN):
  xc, wc, (x_dt, w_dt) = res
  g = g_MN.astype(dtype)
  if transpose_w:  # w is [N, K].
    dx = _long_contraction_mm(g, wc)  # [M, K]
  else:  # w is [K, N].
    dx = _mm(g, wc, (1, 1))  # [M, K]
  dw = _mm(transposed(xc), g, (1, 0))  # x^T g: [K, N]
  if transpose_w:
    # The float32 [K, N] result is transposed rather than g, which is
    # larger ([M, V] for the tied head).
    dw = transposed(dw)
  return dx.astype(x_dt.dtype), dw.astype(w_dt.dtype)


# A contraction at least this long runs on CPU as a sum of dots over
# blocks of `_CONTRACTION_BLOCK`.
_LONG_CONTRACTION = 16384
_CONTRACTION_BLOCK = 1024


def _long_contraction_mm(a_MC: Array, b_CN: Array) -> Array:
  """a @ b (float32 accumulation), in blocks of the contraction on CPU.

  The tied head's input gradient contracts the vocabulary ([M, V] x
  [V, D]): as one bf16 dot, XLA:CPU ran it at about a third of torch's
  rate; as a sum over blocks of 1024 it runs 1.5x faster (SmolLM2's shape,
  2048 x 49152 x 576). No gain in float32, which does not come here.
  """
  c = a_MC.shape[1]
  if (
      jax.default_backend() != "cpu"
      or c < _LONG_CONTRACTION
      or c % _CONTRACTION_BLOCK
  ):
    return _mm(a_MC, b_CN, (1, 0))
  blocks = [
      _mm(
          a_MC[:, i : i + _CONTRACTION_BLOCK],
          b_CN[i : i + _CONTRACTION_BLOCK],
          (1, 0),
      )
      for i in range(0, c, _CONTRACTION_BLOCK)
  ]
  return sum(blocks[1:], blocks[0])


def transposed(x_AB: Array) -> Array:
  """x.T [B, A] as the left operand of a dot contracting its last axis.

  On TPU/GPU this is a plain transpose, which XLA folds into the dot. On
  CPU it is a real row-major copy (`permuted`): XLA:CPU gives a bf16 dot to
  YNNPACK only when the lhs contracts its last axis and upcasts it to
  float32 otherwise (3-5x slower here), and it folds a plain transpose back
  into the dot (dropping optimization barriers before that pass).
  """
  return permuted(x_AB, (1, 0))


def permuted(x: Array, perm: tuple[int, ...]) -> Array:
  """x.transpose(perm), materialised on CPU (see `transposed`).

  For operands of batched dots: XLA folds a plain transpose into the dot's
  dimension numbers, and XLA:CPU then runs a bf16 dot whose axes are not in
  (batch..., rows, contraction) x (batch..., contraction, cols) order as a
  float32 one. Here the transpose is computed in a branch of a conditional
  whose predicate XLA cannot prove: (b | 1) - (b & ~1) is 1 for every bit
  pattern b of x's first element. No pass sees the transpose from the dot.
  """
  if jax.default_backend() != "cpu":
    return x.transpose(perm)
  bits = jax.lax.bitcast_convert_type(
      x.reshape(-1)[0], jnp.dtype(f"uint{8 * x.dtype.itemsize}")
  ).astype(jnp.int32)
  shape = tuple(x.shape[a] for a in perm)
  return jax.lax.cond(
      (bits | 1) - (bits & ~1) == 1,
      lambda x: x.transpose(perm),
      lambda x: jnp.zeros(shape, x.dtype),
      x,
  )


_mixed_matmul.defvjp(_mixed_matmul_fwd, _mixed_matmul_bwd)
