"""Per-token log-probabilities and entropies of targets under logits.

Everything is computed in float32 whatever the logits dtype, from one exp
over the vocabulary and one `take_along_axis` gather:

  log p(y_t) = z_t[y_t] − log S_t,  S_t = Σ_v exp(z_t,v)
  H_t = log S_t − Σ_v exp(z_t,v) · z_t,v / S_t

with z = logits / temperature, shifted by its row maximum first (as
`logsumexp` does anyway): S is in [1, V] and log S and Σ p·z are O(ln V)
instead of O(|z|), so the entropy difference does not cancel
catastrophically for large logits. The two sums share one exp, the costly
part on CPU (a logsumexp followed by a softmax took two). No log-softmax
copy of the [B, L, V] logits is materialised; XLA fuses the shift and the
weighted sum into the reductions.

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


def _shifted_logits(logits_BLV: jax.Array, temperature: float) -> jax.Array:
  """float32 logits / temperature minus the row max (a no-op for softmax)."""
  # Dividing by 1.0 is exact, so no branch is needed and `temperature` may
  # also be a traced scalar.
  z_BLV = logits_BLV.astype(jnp.float32) / jnp.asarray(temperature, jnp.float32)
  max_BL1 = jax.lax.stop_gradient(jnp.max(z_BLV, axis=-1, keepdims=True))
  return z_BLV - max_BL1


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
  z_BLV = _shifted_logits(logits_BLV, temperature)
  # z is already shifted: `jax.nn.logsumexp` would take its max again.
  lse_BL = jnp.log(jnp.sum(jnp.exp(z_BLV), axis=-1))
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
  z_BLV = _shifted_logits(logits_BLV, temperature)
  # Both sums from one exp over [B, L, V] (XLA fuses the two reductions);
  # the max of z is 0, so the total is in [1, V].
  exp_BLV = jnp.exp(z_BLV)
  total_BL = jnp.sum(exp_BLV, axis=-1)
  # Masked vocabulary entries (z = −inf) have probability 0 and must add 0,
  # not 0·(−inf) = NaN, in the value and in the gradient.
  finite_z_BLV = jnp.where(z_BLV > -jnp.inf, z_BLV, 0.0)
  lse_BL = jnp.log(total_BL)
  entropy_BL = lse_BL - jnp.sum(exp_BLV * finite_z_BLV, axis=-1) / total_BL
  logp_BL = _target_logits(z_BLV, targets_BL) - lse_BL
  return logp_BL, entropy_BL
