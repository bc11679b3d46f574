"""Group-relative advantages (GRPO, Dr. GRPO) and dynamic-sampling masks.

For each prompt the policy samples R responses (a *group*); each response's
advantage is its reward relative to its own group:

  A_i = (r_i − mean(r)) / (std(r) + eps)     (GRPO, `scale_by_std=True`)
  A_i =  r_i − mean(r)                       (Dr. GRPO, `scale_by_std=False`)

`std` is the *population* standard deviation (divide by the number of valid
rewards n, not n − 1), as in the GRPO paper and TRL.

Invalid rewards. A reward of NaN (or ±inf) means "not applicable" (e.g. a
reward function could not score a response); an explicit `valid_PR` mask may
mark more entries invalid. Invalid entries are excluded from the group mean
and std and get advantage exactly 0, so they neither move the baseline of
their group nor receive a gradient signal.

Constant groups. A group whose valid rewards are all equal (exactly: max ==
min), or which has fewer than two valid rewards, has zero std and carries no
signal; its advantages are exactly 0 (not a rounding residue divided by eps).

Shape legend:
  P: prompts (groups)
  R: responses per prompt (group size G)
"""

import jax
import jax.numpy as jnp

from rlcs_jax.grpo import pairs

Metrics = pairs.Metrics


def _valid_mask(rewards_PR: jax.Array, valid_PR: jax.Array | None) -> jax.Array:
  valid = jnp.isfinite(rewards_PR)
  if valid_PR is not None:
    valid = valid & valid_PR.astype(bool)
  return valid


def group_moments(
    x_PR: jax.Array, valid_PR: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Per-group count, mean, population variance and constancy.

  Args:
    x_PR: values; entries where `valid_PR` is False may hold anything
      (including NaN) and are ignored.
    valid_PR: bool mask of entries that count.

  Returns:
    `(n_P, mean_P, var_P, const_P)`: int32 number of valid entries, float32
    mean and population variance over them (0 for empty groups), and whether
    the group carries no spread (fewer than two valid entries, or all valid
    entries exactly equal). `var_P` is exactly 0 where `const_P`.
  """
  valid = valid_PR.astype(bool)
  x = jnp.where(valid, x_PR.astype(jnp.float32), 0.0)
  n_P = jnp.sum(valid, axis=-1, dtype=jnp.int32)
  denom_P = jnp.maximum(n_P, 1).astype(jnp.float32)
  mean_P = jnp.sum(x, axis=-1) / denom_P
  dev_PR = jnp.where(valid, x - mean_P[:, None], 0.0)
  var_P = jnp.sum(dev_PR * dev_PR, axis=-1) / denom_P
  hi_P = jnp.max(jnp.where(valid, x, -jnp.inf), axis=-1)
  lo_P = jnp.min(jnp.where(valid, x, jnp.inf), axis=-1)
  const_P = (n_P < 2) | (hi_P == lo_P)
  var_P = jnp.where(const_P, 0.0, var_P)
  return n_P, mean_P, var_P, const_P


def advantage_stats(adv_PR: jax.Array, valid_PR: jax.Array) -> Metrics:
  """Mean, mean square, max and min of advantages over valid entries.

  The std over a whole batch is sqrt(adv_sq_mean − adv_mean²) after
  combining pairs. `adv_max` / `adv_min` are (value, any) pairs (see
  `pairs`). Group-centred advantages have max >= 0 >= min whenever anything
  is valid, so 0 is an exact empty value for combining shards.
  """
  valid = valid_PR.astype(bool)
  adv = adv_PR.astype(jnp.float32)
  return {
      "adv_mean": pairs.masked_pair(adv, valid),
      "adv_sq_mean": pairs.masked_pair(adv * adv, valid),
      "adv_max": pairs.max_pair(adv, valid, fill=0.0),
      "adv_min": pairs.min_pair(adv, valid, fill=0.0),
  }


def group_advantages(
    rewards_PR: jax.Array,
    *,
    scale_by_std: bool = True,
    eps: float = 1e-6,
    valid_PR: jax.Array | None = None,
) -> tuple[jax.Array, Metrics]:
  """Group-normalised advantages; see the module docstring for the rules.

  Args:
    rewards_PR: rewards, float; NaN marks "not applicable".
    scale_by_std: divide by (population std + eps) (GRPO) or not (Dr. GRPO).
      A Python bool (static under jit).
    eps: added to the std before dividing.
    valid_PR: optional bool mask; False entries are treated like NaN.

  Returns:
    `(adv_PR, metrics)`: float32 advantages (0 at invalid entries and in
    constant groups) and (sum, count) metrics: `reward_mean`,
    `reward_sq_mean` (global std = sqrt(sq_mean − mean²)), `reward_group_std`
    (mean within-group std over non-empty groups), `adv_mean`, `adv_sq_mean`,
    `adv_max`, `adv_min`, `zero_std_frac` (over non-empty groups) and
    `valid_frac` (over all entries).
  """
  valid = _valid_mask(rewards_PR, valid_PR)
  rewards = jnp.where(valid, rewards_PR.astype(jnp.float32), 0.0)
  n_P, mean_P, var_P, const_P = group_moments(rewards, valid)
  std_P = jnp.sqrt(var_P)
  centered_PR = rewards - mean_P[:, None]
  if scale_by_std:
    denom_P = jnp.where(const_P, 1.0, std_P + eps)
    adv_PR = centered_PR / denom_P[:, None]
  else:
    adv_PR = centered_PR
  adv_PR = jnp.where(valid & ~const_P[:, None], adv_PR, 0.0)

  nonempty_P = n_P > 0
  metrics = {
      "reward_mean": pairs.masked_pair(rewards, valid),
      "reward_sq_mean": pairs.masked_pair(rewards * rewards, valid),
      "reward_group_std": pairs.masked_pair(std_P, nonempty_P),
      **advantage_stats(adv_PR, valid),
      "zero_std_frac": pairs.count_pair(const_P, nonempty_P),
      "valid_frac": pairs.count_pair(valid, jnp.ones_like(valid)),
  }
  return adv_PR, jax.lax.stop_gradient(metrics)


def group_std_keep_mask(
    rewards_PR: jax.Array,
    min_std: float,
    *,
    valid_PR: jax.Array | None = None,
) -> jax.Array:
  """Dynamic sampling (DAPO): which groups to keep, as a bool `keep_P`.

  A group is kept when its population reward std (over valid rewards, NaN
  excluded as in `group_advantages`) is at least `min_std` and it is not
  constant. Constant groups (all valid rewards equal, or fewer than two valid)
  are always dropped, so `min_std=0` drops exactly the zero-advantage groups.

  Args:
    rewards_PR: rewards, float; NaN marks "not applicable".
    min_std: threshold in reward units; may be a Python or traced scalar.
    valid_PR: optional bool mask; False entries are treated like NaN.

  Returns:
    `keep_P`, bool.
  """
  valid = _valid_mask(rewards_PR, valid_PR)
  _, _, var_P, const_P = group_moments(rewards_PR, valid)
  return ~const_P & (jnp.sqrt(var_P) >= min_std)
