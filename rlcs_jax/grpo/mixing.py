"""RLMR: mixing a writing-quality score with constraint violations (SPEC §4).

Inputs per response: a writing score w (scalar RM or GenRM win rate) and a
violation v ∈ [0, 1] (1 if any constraint fails, or the fraction failed).
Each GRPO group gets its own penalty. With μ = mean(w), v̄ = mean(v) and k the
number of violators (v > 0) among the group's n valid responses:

  rule "rlmr" (default), 0 < k < n:  r = w − λ·v with the smallest λ >= 0
  such that every violator i with v_i > v̄ lands at least δ below the mean:

      w_i − λ v_i <= mean(w − λ v) − δ
    ⇔ λ >= (w_i − μ + δ) / (v_i − v̄)
      λ  = max(0, max_{i: v_i > v̄} (w_i − μ + δ) / (v_i − v̄)).

  For binary v, v_i − v̄ = (n − k)/n for every violator, which gives SPEC's
  λ = max(0, n/(n − k) · (max_{violators}(w_i − μ) + δ)); then every violator
  has r_i − mean(r) <= −δ, i.e. a negative advantage (with or without std
  scaling), and compliant responses keep w (their order is untouched). For
  fractional v, violators with v_i <= v̄ cannot be guaranteed a negative
  advantage by any λ (raising λ lifts them relative to the mean).

  k = 0 or k = n: no contrast to enforce; r = w (`all_violate_mode="raw"`)
  or r = mean(w) for the whole group, i.e. all advantages exactly 0
  ("zero_advantage"). This also applies to "naive_range".

Units of δ. δ is in writing-score units. Z-scoring w per group (w ↦ (w −
μ)/σ) therefore shrinks the score spread but not δ, so the effective margin
grows from δ to σ·δ in raw units. Exactly: rlmr on z-scored w with margin δ
gives r_z = (r_raw − μ)/σ, where r_raw is rlmr on raw w with margin σ·δ, so
the std-normalised advantages are identical and Dr. GRPO advantages differ by
the factor 1/σ (tested in mixing_test.py).

Baselines (same switch, `MixConfig.rule`):
  single_writing     r = w
  single_constraint  r = 1 − v
  fixed_mix          r = α·ŵ + (1 − α)·(1 − v), ŵ = (w − min w)/(max w −
                     min w) per group (min-max over valid entries; a constant
                     group has ŵ = 0.5)
  floor              violators (v > 0) get min(w) − δ, others keep w
  naive_range        r = w − λ·v with λ = max(w) − min(w) + δ: the rule SPEC
                     refutes with w = [1, .95, 0, 0], v = [0, 1, 1, 1].

Non-finite w or v mark a response invalid: it is excluded from every group
statistic and its reward is NaN, which `group_advantages` treats as "not
applicable" (advantage 0).

Shape legend:
  P: prompts (groups)
  R: responses per prompt (group size G)
"""

from collections.abc import Callable
import dataclasses
import math

import jax
import jax.numpy as jnp

from rlcs_jax.grpo import pairs

Metrics = pairs.Metrics


@dataclasses.dataclass(frozen=True)
class _Group:
  """Per-group statistics shared by the rules (valid entries only)."""

  valid_PR: jax.Array
  n_P: jax.Array
  mean_w_P: jax.Array
  min_w_P: jax.Array
  max_w_P: jax.Array
  mean_v_P: jax.Array
  violator_PR: jax.Array
  mixed_P: jax.Array


def _group(w_PR: jax.Array, v_PR: jax.Array, valid_PR: jax.Array) -> _Group:
  n_P = jnp.sum(valid_PR, axis=-1, dtype=jnp.int32)
  denom_P = jnp.maximum(n_P, 1).astype(jnp.float32)
  violator_PR = valid_PR & (v_PR > 0)
  k_P = jnp.sum(violator_PR, axis=-1, dtype=jnp.int32)
  return _Group(
      valid_PR=valid_PR,
      n_P=n_P,
      mean_w_P=jnp.sum(w_PR, axis=-1) / denom_P,
      min_w_P=jnp.min(jnp.where(valid_PR, w_PR, jnp.inf), axis=-1),
      max_w_P=jnp.max(jnp.where(valid_PR, w_PR, -jnp.inf), axis=-1),
      mean_v_P=jnp.sum(v_PR, axis=-1) / denom_P,
      violator_PR=violator_PR,
      mixed_P=(k_P > 0) & (k_P < n_P),
  )


# A rule maps (w_PR, v_PR, group stats, cfg) to (r_PR, lambda_P); lambda_P
# is the penalty of the λ-based rules in groups with mixed violators and 0
# otherwise. Invalid entries of w and v are 0 on input; outputs there are
# overwritten.
_Rule = Callable[
    [jax.Array, jax.Array, _Group, "MixConfig"], tuple[jax.Array, jax.Array]
]


def _penalised(
    w_PR: jax.Array,
    v_PR: jax.Array,
    g: _Group,
    lambda_P: jax.Array,
    cfg: "MixConfig",
) -> tuple[jax.Array, jax.Array]:
  """r = w − λ·v in mixed groups; `all_violate_mode` elsewhere."""
  lambda_P = jnp.where(g.mixed_P, lambda_P, 0.0)
  if cfg.all_violate_mode == "raw":
    other_PR = w_PR
  else:
    other_PR = jnp.broadcast_to(g.mean_w_P[:, None], w_PR.shape)
  penalised_PR = w_PR - lambda_P[:, None] * v_PR
  r_PR = jnp.where(g.mixed_P[:, None], penalised_PR, other_PR)
  return r_PR, lambda_P


def _rule_rlmr(
    w_PR: jax.Array, v_PR: jax.Array, g: _Group, cfg: "MixConfig"
) -> tuple[jax.Array, jax.Array]:
  above_PR = g.valid_PR & (v_PR > g.mean_v_P[:, None])
  gap_PR = jnp.where(above_PR, v_PR - g.mean_v_P[:, None], 1.0)
  need_PR = (w_PR - g.mean_w_P[:, None] + cfg.delta) / gap_PR
  need_P = jnp.max(jnp.where(above_PR, need_PR, 0.0), axis=-1)
  return _penalised(w_PR, v_PR, g, jnp.maximum(need_P, 0.0), cfg)


def _rule_naive_range(
    w_PR: jax.Array, v_PR: jax.Array, g: _Group, cfg: "MixConfig"
) -> tuple[jax.Array, jax.Array]:
  lambda_P = g.max_w_P - g.min_w_P + cfg.delta
  return _penalised(w_PR, v_PR, g, lambda_P, cfg)


def _rule_single_writing(
    w_PR: jax.Array, v_PR: jax.Array, g: _Group, cfg: "MixConfig"
) -> tuple[jax.Array, jax.Array]:
  del v_PR, cfg
  return w_PR, jnp.zeros_like(g.mean_w_P)


def _rule_single_constraint(
    w_PR: jax.Array, v_PR: jax.Array, g: _Group, cfg: "MixConfig"
) -> tuple[jax.Array, jax.Array]:
  del w_PR, cfg
  return 1.0 - v_PR, jnp.zeros_like(g.mean_w_P)


def _rule_fixed_mix(
    w_PR: jax.Array, v_PR: jax.Array, g: _Group, cfg: "MixConfig"
) -> tuple[jax.Array, jax.Array]:
  spread_P = g.max_w_P - g.min_w_P
  const_P = ~(spread_P > 0)  # Also true for empty groups (−inf − inf).
  safe_P = jnp.where(const_P, 1.0, spread_P)
  norm_PR = jnp.where(
      const_P[:, None], 0.5, (w_PR - g.min_w_P[:, None]) / safe_P[:, None]
  )
  r_PR = cfg.alpha * norm_PR + (1.0 - cfg.alpha) * (1.0 - v_PR)
  return r_PR, jnp.zeros_like(g.mean_w_P)


def _rule_floor(
    w_PR: jax.Array, v_PR: jax.Array, g: _Group, cfg: "MixConfig"
) -> tuple[jax.Array, jax.Array]:
  del v_PR
  floor_PR = jnp.broadcast_to((g.min_w_P - cfg.delta)[:, None], w_PR.shape)
  return jnp.where(g.violator_PR, floor_PR, w_PR), jnp.zeros_like(g.mean_w_P)


MIX_RULES: dict[str, _Rule] = {
    "rlmr": _rule_rlmr,
    "single_writing": _rule_single_writing,
    "single_constraint": _rule_single_constraint,
    "fixed_mix": _rule_fixed_mix,
    "floor": _rule_floor,
    "naive_range": _rule_naive_range,
}

ALL_VIOLATE_MODES = ("raw", "zero_advantage")


@dataclasses.dataclass(frozen=True)
class MixConfig:
  """Static settings of `mixed_reward` (hashable: pass as a static arg).

  Attributes:
    rule: a key of `MIX_RULES`; "rlmr" is the method, the others baselines.
    delta: δ >= 0, the margin below the group mean, in writing-score units
      (see the module docstring for how it interacts with z-scored w).
    alpha: α in [0, 1], writing weight of "fixed_mix".
    all_violate_mode: "raw" (r = w) or "zero_advantage" (r = mean w) in
      groups with no or only violators, for "rlmr" and "naive_range".
  """

  rule: str = "rlmr"
  delta: float = 0.1
  alpha: float = 0.5
  all_violate_mode: str = "raw"

  def __post_init__(self):
    if self.rule not in MIX_RULES:
      raise ValueError(
          f"rule must be one of {sorted(MIX_RULES)}, got {self.rule!r}."
      )
    delta = self.delta
    if not (isinstance(delta, (int, float)) and math.isfinite(delta)):
      raise ValueError(f"delta must be a finite number, got {delta!r}.")
    if delta < 0:
      raise ValueError(f"delta must be >= 0, got {delta!r}.")
    alpha = self.alpha
    if not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
      raise ValueError(f"alpha must be in [0, 1], got {alpha!r}.")
    if self.all_violate_mode not in ALL_VIOLATE_MODES:
      raise ValueError(
          f"all_violate_mode must be one of {ALL_VIOLATE_MODES}, got "
          f"{self.all_violate_mode!r}."
      )


def mixed_reward(
    writing_PR: jax.Array,
    violation_PR: jax.Array,
    cfg: MixConfig,
) -> tuple[jax.Array, Metrics]:
  """Per-group mixed rewards; see the module docstring for every rule.

  Args:
    writing_PR: writing scores w, float; NaN marks an unscored response.
    violation_PR: v in [0, 1] (bool, 0/1 or a fraction of failed checks).
    cfg: a `MixConfig` (static under jit).

  Returns:
    `(reward_PR, metrics)`: float32 rewards (NaN at invalid responses) and
    (sum, count) metrics: `lambda_mean` and `lambda_max` (a (max, any)
    pair) over groups with mixed violators (λ is 0 for rules without one),
    `mixed_group_frac` over non-empty groups, and over valid responses
    `violator_rate` (v > 0), `violation_mean` and `writing_mean`.
  """
  w_PR = writing_PR.astype(jnp.float32)
  v_PR = violation_PR.astype(jnp.float32)
  valid_PR = jnp.isfinite(w_PR) & jnp.isfinite(v_PR)
  w_PR = jnp.where(valid_PR, w_PR, 0.0)
  v_PR = jnp.where(valid_PR, v_PR, 0.0)
  g = _group(w_PR, v_PR, valid_PR)

  r_PR, lambda_P = MIX_RULES[cfg.rule](w_PR, v_PR, g, cfg)
  r_PR = jnp.where(valid_PR, r_PR, jnp.nan)

  metrics = {
      "lambda_mean": pairs.masked_pair(lambda_P, g.mixed_P),
      "lambda_max": pairs.max_pair(lambda_P, g.mixed_P, fill=0.0),
      "mixed_group_frac": pairs.count_pair(g.mixed_P, g.n_P > 0),
      "violator_rate": pairs.count_pair(g.violator_PR, valid_PR),
      "violation_mean": pairs.masked_pair(v_PR, valid_PR),
      "writing_mean": pairs.masked_pair(w_PR, valid_PR),
  }
  return r_PR, jax.lax.stop_gradient(metrics)
