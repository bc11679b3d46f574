"""RLCS entropy-based reward shaping for GenRM GRPO (SPEC §3).

A GenRM rollout judges a labelled pair; c ∈ {0, 1} says whether its verdict
matches the label and Ĥ ∈ [0, 1] is its normalised uncertainty. The shaped
reward, with λ = λ_min,

  r = c·(λ + (1 − λ)·Ĥ) − (1 − c)·(λ + (1 − λ)·(1 − Ĥ))

is a sign (±1) times a magnitude `shaping_weight` in [λ, 1]: uncertain
correct judgements earn more than confident ones, confident errors cost more
than uncertain ones. The magnitude can be applied to the reward (before group
normalisation), to the advantage (after it) or as a per-sequence loss weight;
see `SHAPING_TARGETS`. A format failure (no parseable verdict) gets
`format_failure_reward` and, under the advantage / loss-weight targets, a
magnitude of 1.

Entropy sources (Ĥ), all in [0, 1]:
  * `verdict_entropy`: two-way softmax over the verdict tokens' logits.
  * `response_mean_entropy`: mean token entropy of the response / ln V.
  * `group_vote_entropy`: binary entropy of the group's vote split. It is
    constant within a group, so under std normalisation target="reward"
    only applies an increasing affine map to each group's ±1 rewards and
    the advantages do not change (tested in shaping_test.py); use it with
    target="loss_weight".

Shape legend:
  B: batch (judgements)
  L: length (tokens)
  P: prompts (labelled pairs; one GRPO group each)
  R: responses (judgements) per prompt
"""

from collections.abc import Callable
import dataclasses
import math

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp

from rlcs_jax.grpo import advantages
from rlcs_jax.grpo import pairs

Metrics = pairs.Metrics
_LN2 = math.log(2.0)


def verdict_entropy(verdict_logits_B2: jax.Array) -> jax.Array:
  """Entropy of softmax(verdict logits) / ln 2, float32 in [0, 1].

  Args:
    verdict_logits_B2: logits of the two verdict tokens ("1", "2") at the
      verdict position. A −inf logit (token masked out) gives entropy 0.
  """
  logits = verdict_logits_B2.astype(jnp.float32)
  probs = jax.nn.softmax(logits, axis=-1)
  entropy_B = jnp.sum(jsp.entr(probs), axis=-1) / _LN2
  return jnp.clip(entropy_B, 0.0, 1.0)


def response_mean_entropy(
    entropy_BL: jax.Array, mask_BL: jax.Array, vocab_size: int
) -> jax.Array:
  """Mean token entropy over valid tokens / ln V, float32 in [0, 1].

  Args:
    entropy_BL: token entropies in nats (`logprobs.token_logprobs_and_entropy`).
    mask_BL: valid response tokens.
    vocab_size: V; Python int or traced scalar.

  Returns:
    `H_B`; 0 for a sequence without valid tokens.
  """
  mask = mask_BL.astype(bool)
  n_B = jnp.maximum(jnp.sum(mask, axis=-1), 1).astype(jnp.float32)
  mean_B = jnp.sum(jnp.where(mask, entropy_BL, 0.0), axis=-1) / n_B
  log_v = jnp.log(jnp.asarray(vocab_size, jnp.float32))
  return jnp.clip(mean_B / log_v, 0.0, 1.0)


def group_vote_entropy(
    choice_PR: jax.Array, valid_PR: jax.Array | None = None
) -> jax.Array:
  """Binary entropy of each group's vote split / ln 2, broadcast to [P, R].

  Args:
    choice_PR: binary verdicts (e.g. 0 / 1 for first / second candidate, or
      1 / 2); the fraction f of valid votes equal to 1 is used, and H(f) =
      H(1 − f), so either labelling gives the same entropy.
    valid_PR: votes that count (False for format failures); default all.

  Returns:
    `H_PR`, float32 in [0, 1], constant along R; 0 for groups without votes.
  """
  if valid_PR is None:
    valid_PR = jnp.ones(choice_PR.shape, bool)
  valid = valid_PR.astype(bool)
  votes_P = jnp.sum(valid & (choice_PR == 1), axis=-1).astype(jnp.float32)
  n_P = jnp.maximum(jnp.sum(valid, axis=-1), 1).astype(jnp.float32)
  frac_P = votes_P / n_P
  entropy_P = (jsp.entr(frac_P) + jsp.entr(1.0 - frac_P)) / _LN2
  entropy_P = jnp.clip(entropy_P, 0.0, 1.0)
  return jnp.broadcast_to(entropy_P[:, None], choice_PR.shape)


def shaping_weight(
    correct: jax.Array, entropy: jax.Array, lambda_min: float
) -> jax.Array:
  """Magnitude c·(λ + (1−λ)Ĥ) + (1−c)·(λ + (1−λ)(1−Ĥ)) in [λ, 1], float32.

  `entropy` is clipped to [0, 1] (it only leaves it by rounding).
  """
  c = jnp.asarray(correct, jnp.float32)
  h = jnp.clip(jnp.asarray(entropy, jnp.float32), 0.0, 1.0)
  lam = jnp.asarray(lambda_min, jnp.float32)
  return c * (lam + (1.0 - lam) * h) + (1.0 - c) * (
      lam + (1.0 - lam) * (1.0 - h)
  )


def shaped_reward(
    correct_B: jax.Array, entropy_B: jax.Array, lambda_min: float
) -> jax.Array:
  """r = c·(λ + (1−λ)Ĥ) − (1−c)·(λ + (1−λ)(1−Ĥ)), float32 in [−1, 1]."""
  c = jnp.asarray(correct_B, jnp.float32)
  h = jnp.clip(jnp.asarray(entropy_B, jnp.float32), 0.0, 1.0)
  lam = jnp.asarray(lambda_min, jnp.float32)
  return c * (lam + (1.0 - lam) * h) - (1.0 - c) * (
      lam + (1.0 - lam) * (1.0 - h)
  )


# Each target maps (plain ±1 rewards, shaped rewards, magnitudes) to
# (rewards fed to group normalisation, advantage multiplier, sequence weight).
_Target = Callable[
    [jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array]
]


def _target_reward(
    plain: jax.Array, shaped: jax.Array, weight: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
  del plain
  one = jnp.ones_like(weight)
  return shaped, one, one


def _target_advantage(
    plain: jax.Array, shaped: jax.Array, weight: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
  del shaped
  return plain, weight, jnp.ones_like(weight)


def _target_loss_weight(
    plain: jax.Array, shaped: jax.Array, weight: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
  del shaped
  return plain, jnp.ones_like(weight), weight


def _target_none(
    plain: jax.Array, shaped: jax.Array, weight: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
  del shaped
  one = jnp.ones_like(weight)
  return plain, one, one


SHAPING_TARGETS: dict[str, _Target] = {
    "reward": _target_reward,
    "advantage": _target_advantage,
    "loss_weight": _target_loss_weight,
    "none": _target_none,
}


@dataclasses.dataclass(frozen=True)
class ShapingConfig:
  """Static settings of `apply_shaping` (hashable: pass as a static arg).

  Attributes:
    lambda_min: λ_min in [0, 1]; the smallest magnitude. 1 disables shaping.
    target: a key of `SHAPING_TARGETS`: "reward" (shape the reward, then
      normalise), "advantage" (normalise ±1 rewards, multiply advantages by
      the magnitude), "loss_weight" (magnitude as per-sequence loss weight)
      or "none" (plain ±1 rewards).
    format_failure_reward: reward of an unparseable judgement; SPEC: the
      lowest reward, and shaped rewards are >= −1.
  """

  lambda_min: float = 0.5
  target: str = "reward"
  format_failure_reward: float = -1.0

  def __post_init__(self):
    lam = self.lambda_min
    if not (isinstance(lam, (int, float)) and 0.0 <= lam <= 1.0):
      raise ValueError(f"lambda_min must be in [0, 1], got {lam!r}.")
    if self.target not in SHAPING_TARGETS:
      raise ValueError(
          f"target must be one of {sorted(SHAPING_TARGETS)}, got "
          f"{self.target!r}."
      )
    fail = self.format_failure_reward
    if not (isinstance(fail, (int, float)) and math.isfinite(fail)):
      raise ValueError(
          f"format_failure_reward must be a finite number, got {fail!r}."
      )


def _reward_moments(prefix: str, rewards_PR: jax.Array) -> Metrics:
  valid = jnp.ones(rewards_PR.shape, bool)
  n_P, _, var_P, _ = advantages.group_moments(rewards_PR, valid)
  return {
      f"{prefix}_mean": pairs.masked_pair(rewards_PR, valid),
      f"{prefix}_sq_mean": pairs.masked_pair(rewards_PR * rewards_PR, valid),
      f"{prefix}_group_var": pairs.masked_pair(var_P, n_P > 0),
  }


def apply_shaping(
    correct_PR: jax.Array,
    format_ok_PR: jax.Array,
    entropy_PR: jax.Array,
    cfg: ShapingConfig,
    *,
    scale_by_std: bool = True,
    eps: float = 1e-6,
) -> tuple[jax.Array, jax.Array, jax.Array, Metrics]:
  """Rewards, advantages and sequence weights of GenRM judgements.

  Args:
    correct_PR: whether each verdict matches the label (ignored where the
      format failed).
    format_ok_PR: whether a verdict could be parsed.
    entropy_PR: Ĥ in [0, 1] from one of the entropy sources (ignored where
      the format failed, so it may be NaN there).
    cfg: a `ShapingConfig` (static under jit).
    scale_by_std: as in `advantages.group_advantages` (static).
    eps: as in `advantages.group_advantages`.

  Returns:
    `(rewards_PR, adv_PR, seq_weight_PR, metrics)`, float32. `rewards_PR`
    are the rewards that were group-normalised, `adv_PR` the final
    advantages, `seq_weight_PR` the `grpo_loss` sequence weights (all 1
    unless target="loss_weight"). Metrics (sum, count): the
    `group_advantages` metrics of `rewards_PR` (adv_* describe the final
    advantages), `accuracy` and `format_failure_rate` over all judgements,
    `entropy_mean` and `shaping_weight_mean` over parsed ones, and
    `shaped_reward_*` / `unshaped_reward_*` `mean`, `sq_mean` and
    `group_var` (mean within-group variance) of the formula rewards and of
    the plain ±1 rewards, whatever the target.
  """
  ok = format_ok_PR.astype(bool)
  correct = correct_PR.astype(bool) & ok
  entropy = jnp.where(ok, entropy_PR.astype(jnp.float32), 0.0)
  fail = jnp.float32(cfg.format_failure_reward)

  plain_PR = jnp.where(ok, jnp.where(correct, 1.0, -1.0), fail)
  shaped_PR = jnp.where(
      ok, shaped_reward(correct, entropy, cfg.lambda_min), fail
  )
  weight_PR = jnp.where(
      ok, shaping_weight(correct, entropy, cfg.lambda_min), 1.0
  )
  rewards_PR, adv_scale_PR, seq_weight_PR = SHAPING_TARGETS[cfg.target](
      plain_PR, shaped_PR, weight_PR
  )
  adv_PR, adv_metrics = advantages.group_advantages(
      rewards_PR, scale_by_std=scale_by_std, eps=eps
  )
  adv_PR = adv_PR * adv_scale_PR

  everything = jnp.ones(ok.shape, bool)
  metrics = {
      **adv_metrics,
      **advantages.advantage_stats(adv_PR, everything),
      "accuracy": pairs.count_pair(correct, everything),
      "format_failure_rate": pairs.count_pair(~ok, everything),
      "entropy_mean": pairs.masked_pair(entropy, ok),
      "shaping_weight_mean": pairs.masked_pair(weight_PR, ok),
      **_reward_moments("shaped_reward", shaped_PR),
      **_reward_moments("unshaped_reward", plain_PR),
  }
  return rewards_PR, adv_PR, seq_weight_PR, jax.lax.stop_gradient(metrics)
