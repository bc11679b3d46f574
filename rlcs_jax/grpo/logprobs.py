"""Per-token log-probabilities and entropies of targets under logits.

Everything is computed in float32 whatever the logits dtype, from one exp
over the vocabulary and one `take_along_axis` gather:

  log p(y_t) = z_t[y_t] − log S_t,  S_t = Σ_v exp(z_t,v)
  H_t = log S_t − Σ_v exp(z_t,v) · z_t,v / S_t

with z = logits / temperature, shifted by its row maximum first (as
`logsumexp` does anyway): S is in [1, V] and log S and Σ p·z are O(ln V)
instead of O(|z|), so the entropy difference does not cancel
catastrophically for large logits. The two sums share one exp, the costly
part on CPU, in one native reduction (`_exp_sums`); `token_logprobs`, which
needs only S, keeps `logsumexp`. No log-softmax copy of the [B, L, V]
logits is materialised.

Target ids outside [0, V) (e.g. a padding id of −1) are clamped into range:
they only occur at masked positions, and clamping keeps those positions
finite so that a masked NaN can never leak into a sum or a gradient.

Shape legend:
  B: batch (sequences)
  L: length (tokens)
  V: vocabulary
"""

import jax
import jax.numpy as jnp


def _scaled_logits(logits_BLV: jax.Array, temperature) -> jax.Array:
  """float32 logits / temperature."""
  # Dividing by 1.0 is exact, so no branch is needed and `temperature` may
  # also be a traced scalar.
  return logits_BLV.astype(jnp.float32) / jnp.asarray(temperature, jnp.float32)


def _row_max(x_BLV: jax.Array) -> jax.Array:
  """The row max that shifts z (a no-op for softmax), without a gradient."""
  return jax.lax.stop_gradient(jnp.max(x_BLV, axis=-1, keepdims=True))


def _log_softmax_parts(logits_BLV, targets_BL, temperature):
  """(z at the targets, log S, Σ exp(z)·z / S) for z = logits / temperature
  minus its row max and S = Σ_v exp(z)."""
  x_BLV = _scaled_logits(logits_BLV, temperature)
  max_BL1 = _row_max(x_BLV)
  total_BL, weighted_BL = _exp_sums(logits_BLV, temperature, max_BL1)
  target_BL = _target_logits(x_BLV, targets_BL)
  return (
      target_BL - max_BL1[..., 0],
      jnp.log(total_BL),
      weighted_BL / total_BL,
  )


def _target_logits(z_BLV: jax.Array, targets_BL: jax.Array) -> jax.Array:
  vocab = z_BLV.shape[-1]
  ids_BL1 = jnp.clip(targets_BL.astype(jnp.int32), 0, vocab - 1)[..., None]
  return jnp.take_along_axis(z_BLV, ids_BL1, axis=-1)[..., 0]


def token_logprobs(
    logits_BLV: jax.Array,
    targets_BL: jax.Array,
    *,
    temperature: float = 1.0,
) -> jax.Array:
  """Returns float32 `logp_BL` = log softmax(logits / temperature)[targets].

  Args:
    logits_BLV: logits at the positions that predict `targets_BL` (already
      shifted by the caller), any float dtype.
    targets_BL: integer token ids.
    temperature: divisor of the logits (the sampler's temperature, so that
      log-probs match the sampling distribution).
  """
  # Without the weighted sum (SFT), logsumexp's YNNPACK reduction ran
  # faster here than `_exp_sums`.
  x_BLV = _scaled_logits(logits_BLV, temperature)
  z_BLV = x_BLV - _row_max(x_BLV)
  lse_BL = jax.nn.logsumexp(z_BLV, axis=-1)
  return _target_logits(z_BLV, targets_BL) - lse_BL


def token_logprobs_and_entropy(
    logits_BLV: jax.Array,
    targets_BL: jax.Array,
    *,
    temperature: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
  """Returns float32 `(logp_BL, entropy_BL)` of softmax(logits / temperature).

  The entropy is in nats, in [0, ln V]. Arguments as in `token_logprobs`.
  """
  target_BL, lse_BL, mean_z_BL = _log_softmax_parts(
      logits_BLV, targets_BL, temperature
  )
  return target_BL - lse_BL, lse_BL - mean_z_BL


def _finite(z: jax.Array) -> jax.Array:
  """z with −inf (masked vocabulary entries, probability 0) replaced by 0,
  so that they add 0, not 0·(−inf) = NaN, in values and gradients."""
  return jnp.where(z > -jnp.inf, z, 0.0)


@jax.custom_vjp
def _exp_sums(logits_BLV, temperature, max_BL1):
  """(Σ_v exp(z), Σ_v exp(z)·z) over the last axis for z = logits /
  temperature − max (so z ≤ 0 or −inf).

  One variadic reduction, which XLA:CPU compiles as one native loop with
  z and the exp inside; a `jnp.sum(jnp.exp(z))` becomes a YNNPACK
  reduction with the exp fused in, and the entropy's softmax-weighted sum
  took a second exp. That way took 1.2-1.6x as long, forward and forward +
  backward (`cpu_profile --sections logprobs`). Summed in blocks of up to
  256 entries, then over the blocks, to keep out the float32 rounding of
  one sequential sum over 49k terms. The backward pass is one elementwise
  map.
  """
  z_BLV = _scaled_logits(logits_BLV, temperature) - max_BL1
  exp_BLV = jnp.exp(z_BLV)
  v = z_BLV.shape[-1]
  block = next((b for b in (256, 128, 64, 32, 16, 8, 4, 2) if v % b == 0), 1)
  split = lambda x: x.reshape(*x.shape[:-1], v // block, block)
  partial = jax.lax.reduce(
      (split(exp_BLV), split(exp_BLV * _finite(z_BLV))),
      (jnp.float32(0), jnp.float32(0)),
      lambda a, b: (a[0] + b[0], a[1] + b[1]),
      (z_BLV.ndim,),
  )
  return tuple(jnp.sum(x, axis=-1) for x in partial)


def _exp_sums_fwd(logits_BLV, temperature, max_BL1):
  out = _exp_sums(logits_BLV, temperature, max_BL1)
  return out, (logits_BLV, temperature, max_BL1)


def _exp_sums_bwd(res, cotangents):
  logits_BLV, temperature, max_BL1 = res
  g_total_BL, g_weighted_BL = cotangents
  x_BLV = _scaled_logits(logits_BLV, temperature)
  z_BLV = x_BLV - max_BL1
  # d exp(z) = exp(z) dz; d exp(z)·z = exp(z)·(z + 1) dz (0 where z = −inf).
  g_z_BLV = jnp.exp(z_BLV) * (
      g_total_BL[..., None] + g_weighted_BL[..., None] * (_finite(z_BLV) + 1)
  )
  t = jnp.asarray(temperature, jnp.float32)
  g_t = -jnp.sum(g_z_BLV * _finite(x_BLV)) / t
  return (
      (g_z_BLV / t).astype(logits_BLV.dtype),
      jnp.asarray(g_t, jnp.result_type(temperature)),
      -jnp.sum(g_z_BLV, axis=-1, keepdims=True),
  )


_exp_sums.defvjp(_exp_sums_fwd, _exp_sums_bwd)
