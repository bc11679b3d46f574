"""GRPO clipped surrogate, KL penalties and loss aggregation.

Per valid token t of sequence b, with ρ = exp(logπθ − logπold):

  ℓ_bt = w_b · ( −min(ρ A_b, clip(ρ, 1 − ε_low, 1 + ε_high) A_b)
                 + β · KL(logπθ, logπref) )

where w_b is an optional per-sequence weight (entropy shaping's
`loss_weight` target) and the KL term is present only when β > 0 and the
estimator is not "none". `old_logp` and `ref_logp` are data: gradients are
stopped through them.

Aggregation turns ℓ into one `(loss_sum, loss_count)` pair whose quotient is
the loss; pairs of micro-batches and shards are added before dividing:

  token_mean               (Σ_b Σ_t ℓ_bt,          #valid tokens)      DAPO
  seq_mean_token_mean      (Σ_b mean_t ℓ_bt,       #non-empty seqs)    GRPO
  seq_mean_token_sum_norm  (Σ_b Σ_t ℓ_bt / L_max,  #non-empty seqs)    Dr. GRPO

A sequence with no valid token (padding row, dropped group) adds nothing to
either entry. For gradient accumulation, differentiate `loss_sum` of each
micro-batch, add the gradients and divide by the combined count (counts carry
no gradient), which equals the gradient of the full-batch loss.

Metrics are (sum, count) pairs over valid tokens (see `pairs`); `ratio_max`
is a `(max, any)` pair combined by maximum.

Shape legend:
  B: batch (sequences)
  L: length (tokens)
"""

from collections.abc import Callable
import dataclasses
import math

import jax
import jax.numpy as jnp

from rlcs_jax.grpo import pairs

# Re-exported: the loss is consumed through these helpers.
combine = pairs.combine
finalize = pairs.finalize
finalize_all = pairs.finalize_all
Metrics = pairs.Metrics
Pair = pairs.Pair


def kl_k1(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
  """k1 = logπθ − logπref: unbiased, but negative on some tokens."""
  return logp - ref_logp


def kl_k2(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
  """k2 = ½ (logπθ − logπref)²: biased, low variance, always >= 0."""
  diff = logp - ref_logp
  return 0.5 * diff * diff


def kl_k3(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
  """k3 = exp(ref − logp) − (ref − logp) − 1: unbiased and always >= 0.

  Written as expm1(d) − d, which is accurate for small d; the `maximum`
  removes a rounding residue below 0 (the exact value is >= 0). No clamp on
  d: a huge d gives inf, which the trainer's non-finite check reports.
  """
  d = ref_logp - logp
  return jnp.maximum(jnp.expm1(d) - d, 0.0)


def kl_none(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
  """No KL penalty."""
  del ref_logp
  return jnp.zeros_like(logp)


KL_ESTIMATORS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "k1": kl_k1,
    "k2": kl_k2,
    "k3": kl_k3,
    "none": kl_none,
}


def _token_mean(
    loss_BL: jax.Array, mask_BL: jax.Array, *, max_response_len: int | None
) -> Pair:
  del max_response_len
  return pairs.masked_pair(loss_BL, mask_BL)


def _seq_mean_token_mean(
    loss_BL: jax.Array, mask_BL: jax.Array, *, max_response_len: int | None
) -> Pair:
  del max_response_len
  n_B = jnp.sum(mask_BL, axis=-1, dtype=jnp.int32)
  sum_B = jnp.sum(jnp.where(mask_BL, loss_BL, 0.0), axis=-1)
  mean_B = sum_B / jnp.maximum(n_B, 1).astype(jnp.float32)
  return jnp.sum(mean_B), jnp.sum(n_B > 0, dtype=jnp.int32)


def _seq_mean_token_sum_norm(
    loss_BL: jax.Array, mask_BL: jax.Array, *, max_response_len: int | None
) -> Pair:
  n_B = jnp.sum(mask_BL, axis=-1, dtype=jnp.int32)
  total = jnp.sum(jnp.where(mask_BL, loss_BL, 0.0))
  return total / max_response_len, jnp.sum(n_B > 0, dtype=jnp.int32)


AGGREGATIONS: dict[str, Callable[..., Pair]] = {
    "token_mean": _token_mean,
    "seq_mean_token_mean": _seq_mean_token_mean,
    "seq_mean_token_sum_norm": _seq_mean_token_sum_norm,
}


def _check_nonneg_float(name: str, value: float) -> None:
  if not (isinstance(value, (int, float)) and math.isfinite(value)):
    raise ValueError(f"{name} must be a finite number, got {value!r}.")
  if value < 0:
    raise ValueError(f"{name} must be >= 0, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Static settings of `grpo_loss` (hashable: pass it as a static arg).

  Attributes:
    clip_eps_low: ε_low, the ratio is clipped below at 1 − ε_low; in [0, 1).
    clip_eps_high: ε_high, clipped above at 1 + ε_high (DAPO uses 0.28).
    beta: KL coefficient; 0 disables the KL term (no reference model needed).
    kl_estimator: a key of `KL_ESTIMATORS` ("k1", "k2", "k3", "none").
    aggregation: a key of `AGGREGATIONS`.
    max_response_len: the constant divisor of "seq_mean_token_sum_norm"
      (Dr. GRPO); required, a positive int, for that aggregation.
  """

  clip_eps_low: float = 0.2
  clip_eps_high: float = 0.2
  beta: float = 0.04
  kl_estimator: str = "k3"
  aggregation: str = "seq_mean_token_mean"
  max_response_len: int | None = None

  def __post_init__(self):
    _check_nonneg_float("clip_eps_low", self.clip_eps_low)
    if self.clip_eps_low >= 1:
      raise ValueError(
          f"clip_eps_low must be < 1 (the lower clip bound 1 - eps must be "
          f"positive), got {self.clip_eps_low!r}."
      )
    _check_nonneg_float("clip_eps_high", self.clip_eps_high)
    _check_nonneg_float("beta", self.beta)
    if self.kl_estimator not in KL_ESTIMATORS:
      raise ValueError(
          f"kl_estimator must be one of {sorted(KL_ESTIMATORS)}, got "
          f"{self.kl_estimator!r}."
      )
    if self.aggregation not in AGGREGATIONS:
      raise ValueError(
          f"aggregation must be one of {sorted(AGGREGATIONS)}, got "
          f"{self.aggregation!r}."
      )
    length = self.max_response_len
    if length is None:
      if self.aggregation == "seq_mean_token_sum_norm":
        raise ValueError(
            "aggregation='seq_mean_token_sum_norm' needs max_response_len "
            "(the constant per-sequence divisor), got None."
        )
    elif isinstance(length, bool) or not isinstance(length, int) or length < 1:
      raise ValueError(
          f"max_response_len must be a positive int, got {length!r}."
      )

  @property
  def uses_kl(self) -> bool:
    """Whether the loss has a KL term (and so needs reference log-probs)."""
    return self.beta > 0 and self.kl_estimator != "none"


def grpo_loss(
    logp_BL: jax.Array,
    old_logp_BL: jax.Array,
    adv_B: jax.Array,
    mask_BL: jax.Array,
    cfg: LossConfig,
    *,
    ref_logp_BL: jax.Array | None = None,
    seq_weight_B: jax.Array | None = None,
    entropy_BL: jax.Array | None = None,
) -> tuple[Pair, Metrics]:
  """Clipped GRPO surrogate (+ β·KL) as a `(loss_sum, loss_count)` pair.

  Args:
    logp_BL: log-probs of the sampled tokens under the current policy; the
      gradient flows through these only.
    old_logp_BL: log-probs under the policy that sampled (stored at rollout
      time); equal to `logp_BL` on the first iteration.
    adv_B: one advantage per sequence.
    mask_BL: True (or 1) at response tokens that count.
    cfg: a `LossConfig` (static under jit).
    ref_logp_BL: reference-model log-probs; required when `cfg.uses_kl`.
      When given with β = 0 the KL is still reported as a metric.
    seq_weight_B: optional per-sequence weight multiplying every token loss
      (KL included).
    entropy_BL: optional token entropies, only reported as a metric.

  Returns:
    `((loss_sum, loss_count), metrics)`; the loss is `loss_sum / loss_count`
    (see `finalize`). Metrics, as (sum, count) over valid tokens:
    `clip_frac_low` (ρ < 1 − ε_low with A < 0), `clip_frac_high` (ρ > 1 +
    ε_high with A > 0), `clip_frac` (either), `ratio_mean`, `ratio_max`
    (a (max, any) pair), `pg_loss` (token mean of the unweighted surrogate),
    and `kl` / `entropy` when reference log-probs / entropies are given.

  Raises:
    ValueError: when the KL term is on and `ref_logp_BL` is missing.
  """
  if cfg.uses_kl and ref_logp_BL is None:
    raise ValueError(
        f"grpo_loss: beta={cfg.beta} with kl_estimator="
        f"{cfg.kl_estimator!r} needs ref_logp_BL; pass the reference "
        "model's log-probs or set beta=0 / kl_estimator='none'."
    )
  mask = mask_BL.astype(bool)
  logp = logp_BL.astype(jnp.float32)
  old_logp = jax.lax.stop_gradient(old_logp_BL.astype(jnp.float32))
  adv_B1 = adv_B.astype(jnp.float32)[:, None]

  # Masked positions get log-ratio 0 *before* exp, so padding garbage can
  # produce neither inf in the value nor NaN in the gradient.
  log_ratio = jnp.where(mask, logp - old_logp, 0.0)
  ratio = jnp.exp(log_ratio)
  clipped = jnp.clip(ratio, 1.0 - cfg.clip_eps_low, 1.0 + cfg.clip_eps_high)
  pg_loss = -jnp.minimum(ratio * adv_B1, clipped * adv_B1)
  token_loss = pg_loss

  kl = None
  if ref_logp_BL is not None and cfg.kl_estimator != "none":
    ref_logp = jax.lax.stop_gradient(ref_logp_BL.astype(jnp.float32))
    kl = KL_ESTIMATORS[cfg.kl_estimator](
        jnp.where(mask, logp, 0.0), jnp.where(mask, ref_logp, 0.0)
    )
    if cfg.uses_kl:
      token_loss = token_loss + cfg.beta * kl
  if seq_weight_B is not None:
    token_loss = token_loss * seq_weight_B.astype(jnp.float32)[:, None]

  loss_pair = AGGREGATIONS[cfg.aggregation](
      token_loss, mask, max_response_len=cfg.max_response_len
  )

  low = (ratio < 1.0 - cfg.clip_eps_low) & (adv_B1 < 0)
  high = (ratio > 1.0 + cfg.clip_eps_high) & (adv_B1 > 0)
  metrics = {
      "clip_frac_low": pairs.count_pair(low, mask),
      "clip_frac_high": pairs.count_pair(high, mask),
      "clip_frac": pairs.count_pair(low | high, mask),
      "ratio_mean": pairs.masked_pair(ratio, mask),
      "ratio_max": pairs.max_pair(ratio, mask, fill=0.0),
      "pg_loss": pairs.masked_pair(pg_loss, mask),
  }
  if kl is not None:
    metrics["kl"] = pairs.masked_pair(kl, mask)
  if entropy_BL is not None:
    metrics["entropy"] = pairs.masked_pair(entropy_BL, mask)
  return loss_pair, jax.lax.stop_gradient(metrics)
