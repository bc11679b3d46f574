"""Grouped-query attention: over new tokens (with a backward), over a cache.

`self_attention`: the training forward pass, the reference and log-prob
passes and the prefill attend over the L tokens they are given (no cache;
after a shared prefix's keys in GRPO's shared prompt pass). Written as
einsums and differentiated by JAX, that attention took about 30% of the op
time of a bf16 SmolLM2 training step on XLA:CPU for about 6% of its FLOPs:
JAX's transposed products contract their operands' leading axes, and
XLA:CPU runs such a bf16 dot as a float32 one (converting the [B, K, G*L,
S] probabilities first) or copies the big operands into another layout,
and softmax's backward sums p * dp over S.

Here both passes are written out (`jax.custom_vjp`) so that every product is
a plain batched matmul: [B, K, M, C] @ [B, K, C, N], batched over (b, k),
contracting the left operand's last axis and the right one's first
non-batch axis. Only the small operands (queries, keys, values, output
gradients: [B, L, N, H]-sized) are rearranged, never the [.., M, S]
probabilities or their gradients. The backward pass uses the identity
sum_s p_s dp_s = dout . out (per query row and head), a sum over H instead
of S, and zeroes the gradient of masked scores (also for a row with no
visible key, whose probabilities are uniform).

`segment_attention`: decoding and extending a KV cache, queries over the
cache and the new tokens as segments of one softmax (no backward needed).

Shape legend: B batch, L queries, S keys (L, or a prefix's Lp + L), N query
heads, K kv heads, G = N // K, M = G * L (query rows per kv head, g-major),
H head dim.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rlcs_jax.model import kv_cache
from rlcs_jax.model.matmul import dot, permuted

Array = jax.Array

NEG_INF = -1e30  # Finite, so rows with no visible key give no NaN.


def _bmm(a_XYMC: Array, b_XYCN: Array) -> Array:
  """[X, Y, M, C] @ [X, Y, C, N] -> float32 [X, Y, M, N]."""
  return jax.lax.dot_general(
      a_XYMC,
      b_XYCN,
      (((3,), (2,)), ((0, 1), (0, 1))),
      preferred_element_type=jnp.float32,
  )


def _rows(x_BLNH: Array, k: int, dtype, transpose_last: bool = False):
  """[B, L, N, H] -> [B, K, M, H] (or [B, K, H, M]) in `dtype`."""
  b, l, n, h = x_BLNH.shape
  x = x_BLNH.astype(dtype).reshape(b, l, k, n // k, h)
  if transpose_last:
    return permuted(x, (0, 2, 4, 3, 1)).reshape(b, k, h, -1)
  return permuted(x, (0, 2, 3, 1, 4)).reshape(b, k, -1, h)


def _forward(q_BLNH, k_BSKH, v_BSKH, mask_BLS, dtype):
  b, l, n, h = q_BLNH.shape
  k, s = k_BSKH.shape[2], k_BSKH.shape[1]
  g = n // k
  q_BKMH = _rows(q_BLNH, k, dtype)
  k_BKHS = permuted(k_BSKH.astype(dtype), (0, 2, 3, 1))
  v_BKSH = permuted(v_BSKH.astype(dtype), (0, 2, 1, 3))
  scores = _bmm(q_BKMH, k_BKHS).reshape(b, k, g, l, s)
  scores = jnp.where(mask_BLS[:, None, None], scores * h**-0.5, NEG_INF)
  probs_BKMS = (
      jax.nn.softmax(scores, axis=-1).astype(dtype).reshape(b, k, -1, s)
  )
  out = _bmm(probs_BKMS, v_BKSH).reshape(b, k, g, l, h)
  out_BLNH = out.transpose(0, 3, 1, 2, 4).reshape(b, l, n, h)
  # Empty arrays that carry the inputs' dtypes for their gradients.
  dtypes = tuple(jnp.zeros((0,), x.dtype) for x in (q_BLNH, k_BSKH, v_BSKH))
  res = (q_BKMH, k_BKHS, v_BKSH, probs_BKMS, out_BLNH, mask_BLS, dtypes)
  return out_BLNH, res


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def self_attention(q_BLNH, k_BSKH, v_BSKH, mask_BLS, dtype) -> Array:
  """Softmax(q k^T / sqrt(H), masked) v for grouped query heads.

  q [B, L, N, H], keys and values [B, S, K, H], mask_BLS (bool) which keys
  each query sees. Products take inputs in `dtype` with float32
  accumulation; the softmax is float32 and its probabilities enter the
  second product in `dtype`. Returns float32 [B, L, N, H].
  """
  return _forward(q_BLNH, k_BSKH, v_BSKH, mask_BLS, dtype)[0]


def _self_attention_bwd(dtype, res, dout_BLNH):
  q_BKMH, k_BKHS, v_BKSH, probs_BKMS, out_BLNH, mask_BLS, dtypes = res
  b, l, n, h = dout_BLNH.shape
  k, s = k_BKHS.shape[1], k_BKHS.shape[3]
  g = n // k
  # The softmax backward's row sums sum_s p_s dp_s, as dout . out (a sum
  # over H): exactly so with the rounded dout that dp is computed from (out
  # is already the product of the rounded p and v). With the float32 dout
  # the two differ by dout's rounding, which the subtraction below does not
  # cancel: every score's gradient would gain a term proportional to p.
  dout_c = dout_BLNH.astype(dtype)
  delta = jnp.sum(dout_c.astype(jnp.float32) * out_BLNH, axis=-1)  # [B, L, N]
  delta_BKGL1 = delta.reshape(b, l, k, g).transpose(0, 2, 3, 1)[..., None]
  dout_BKMH = _rows(dout_c, k, dtype)
  dout_BKHM = _rows(dout_c, k, dtype, transpose_last=True)
  dprobs = _bmm(dout_BKMH, permuted(v_BKSH, (0, 1, 3, 2)))
  dscores = probs_BKMS.astype(jnp.float32).reshape(b, k, g, l, s) * (
      dprobs.reshape(b, k, g, l, s) - delta_BKGL1
  )
  dscores_BKMS = (
      jnp.where(mask_BLS[:, None, None], dscores, 0.0)
      .astype(dtype)
      .reshape(b, k, -1, s)
  )
  dq = _bmm(dscores_BKMS, permuted(k_BKHS, (0, 1, 3, 2))) * h**-0.5
  dk_BKHS = _bmm(permuted(q_BKMH, (0, 1, 3, 2)), dscores_BKMS) * h**-0.5
  dv_BKHS = _bmm(dout_BKHM, probs_BKMS)
  dq_BLNH = (
      dq.reshape(b, k, g, l, h).transpose(0, 3, 1, 2, 4).reshape(b, l, n, h)
  )
  grads = (
      dq_BLNH,
      dk_BKHS.transpose(0, 3, 1, 2),
      dv_BKHS.transpose(0, 3, 1, 2),
  )
  return (*(g.astype(d.dtype) for g, d in zip(grads, dtypes)), None)


self_attention.defvjp(_forward, _self_attention_bwd)


def segment_attention(q_BLNH, segments, dtype):
  """Grouped-query attention of L queries over segments of keys.

  The cached path (decoding, extending a cache); attention over the new
  tokens alone (or after a prefix) is `self_attention`. Each segment is (keys,
  values, mask_BLS, cached): keys and values [B, S, K, H], or in the
  cache's layout (`CACHE_LAYOUT`) when cached, and which of its S keys each
  query sees. One softmax (float32) spans all segments' keys. Returns the
  output [B, L, N, H] and the last cached segment's probabilities x values
  product [B, K, G*L, H] (None without one).
  """
  b, l, n, h = q_BLNH.shape
  keys, _, _, cached = segments[0]
  k = keys.shape[kv_cache.CACHE_LAYOUT["k"].index("k") if cached else 2]
  g = n // k
  q = q_BLNH.reshape(b, l, k, g, h)
  # Cached segments contract [B, K, G*L, .] queries with the cache as plain
  # batched matmuls (each contracting the left operand's last axis and the
  # right one's first non-batch axis), the form XLA:CPU hands to YNNPACK
  # without transposing the cache.
  q_BKMH = q.transpose(0, 2, 3, 1, 4).reshape(b, k, g * l, h)
  kl, vl = kv_cache.CACHE_LAYOUT["k"], kv_cache.CACHE_LAYOUT["v"]
  logits = []
  for keys, _, mask_BLS, cached in segments:
    if cached:
      x = dot(f"bkmh,{kl}->bkms", q_BKMH, keys, dtype).reshape(b, k, g, l, -1)
    else:
      x = dot("blkgh,bskh->bkgls", q, keys, dtype)
    logits.append(jnp.where(mask_BLS[:, None, None], x * h**-0.5, NEG_INF))
  probs = jax.nn.softmax(jnp.concatenate(logits, axis=-1), axis=-1)
  splits = np.cumsum([x.shape[-1] for x in logits])[:-1]
  outs, read = [], None
  for p, (_, values, _, cached) in zip(
      jnp.split(probs, splits, axis=-1), segments
  ):
    if cached:
      y = read = dot(
          f"bkms,{vl}->bkmh", p.reshape(b, k, g * l, -1), values, dtype
      )
      outs.append(y.reshape(b, k, g, l, h).transpose(0, 3, 1, 2, 4))
    else:
      outs.append(dot("bkgls,bskh->blkgh", p, values, dtype))
  return sum(outs[1:], outs[0]).reshape(b, l, n, h), read
