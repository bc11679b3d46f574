"""Tests for rlcs_jax.grpo.advantages: hand-computed group advantages."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rlcs_jax.grpo import advantages
from rlcs_jax.grpo import pairs

NAN = float("nan")
SQRT3 = math.sqrt(3.0)

# Jitted once: eager mode would compile every primitive separately.
group_advantages = jax.jit(
    advantages.group_advantages, static_argnames="scale_by_std"
)
group_std_keep_mask = jax.jit(advantages.group_std_keep_mask)


def test_group_advantages_hand_computed_2x4():
  # Row 0: mean 1/2, population std 1/2      -> A = ±1.
  # Row 1: mean 1/2, var (3·¼ + 9/4)/4 = ¾    -> std √3/2,
  #        A(0) = −½ / (√3/2) = −1/√3, A(2) = (3/2) / (√3/2) = √3.
  rewards = jnp.array([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 2.0]])
  adv, metrics = group_advantages(rewards, eps=0.0)
  expected = np.array(
      [[1.0, -1.0, -1.0, 1.0], [-1 / SQRT3, -1 / SQRT3, -1 / SQRT3, SQRT3]]
  )
  np.testing.assert_allclose(adv, expected, rtol=1e-6)
  # Default eps = 1e-6 shrinks row 0 by 0.5 / (0.5 + 1e-6).
  adv_eps, _ = group_advantages(rewards)
  np.testing.assert_allclose(
      adv_eps[0], expected[0] * 0.5 / 0.500001, rtol=1e-7
  )

  # Metrics: Σr = 2 + 2 over 8; Σr² = 2 + 4; group std ½ + √3/2 over 2.
  np.testing.assert_allclose(metrics["reward_mean"], (4.0, 8))
  np.testing.assert_allclose(metrics["reward_sq_mean"], (6.0, 8))
  np.testing.assert_allclose(
      metrics["reward_group_std"], (0.5 + SQRT3 / 2, 2), rtol=1e-6
  )
  np.testing.assert_allclose(metrics["adv_mean"], (0.0, 8), atol=1e-6)
  # Σ A² = n per group when eps = 0 (z-scores have unit population var).
  np.testing.assert_allclose(metrics["adv_sq_mean"], (8.0, 8), rtol=1e-6)
  np.testing.assert_allclose(metrics["adv_max"], (SQRT3, 1), rtol=1e-6)
  np.testing.assert_allclose(metrics["adv_min"], (-1.0, 1), rtol=1e-6)
  np.testing.assert_allclose(metrics["zero_std_frac"], (0.0, 2))


def test_dr_grpo_no_std_scaling():
  rewards = jnp.array([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 2.0]])
  adv, _ = group_advantages(rewards, scale_by_std=False)
  expected = [[0.5, -0.5, -0.5, 0.5], [-0.5, -0.5, -0.5, 1.5]]
  np.testing.assert_allclose(adv, expected, rtol=1e-6)


def test_nan_rewards_are_excluded_and_get_zero_advantage():
  # Valid rewards [1, 0, 1]: mean 2/3, population std √2/3,
  # A(1) = (1/3)/(√2/3) = 1/√2, A(0) = (−2/3)/(√2/3) = −√2.
  rewards = jnp.array([[1.0, NAN, 0.0, 1.0]])
  adv, metrics = group_advantages(rewards, eps=0.0)
  expected = [[1 / math.sqrt(2), 0.0, -math.sqrt(2), 1 / math.sqrt(2)]]
  np.testing.assert_allclose(adv, expected, rtol=1e-6)
  assert np.all(np.isfinite(adv))
  np.testing.assert_allclose(metrics["reward_mean"], (2.0, 3))
  np.testing.assert_allclose(metrics["valid_frac"], (3.0, 4))
  # An explicit mask does the same as NaN.
  masked, _ = group_advantages(
      jnp.array([[1.0, 5.0, 0.0, 1.0]]),
      eps=0.0,
      valid_PR=jnp.array([[True, False, True, True]]),
  )
  np.testing.assert_allclose(masked, expected, rtol=1e-6)


def test_constant_and_empty_groups_have_exactly_zero_advantage():
  # 0.1 * 3 / 3 != 0.1 in float32: the constant check must not divide a
  # rounding residue by eps.
  rewards = jnp.array(
      [[0.1, 0.1, 0.1], [NAN, NAN, NAN], [NAN, 2.0, NAN], [0.0, 1.0, 1.0]]
  )
  adv, metrics = group_advantages(rewards)
  np.testing.assert_array_equal(adv[:3], 0.0)
  assert np.all(np.abs(adv[3]) > 0.5)
  # Three non-empty groups, two of them (rows 0 and 2) without spread.
  np.testing.assert_allclose(metrics["zero_std_frac"], (2.0, 3))
  np.testing.assert_allclose(metrics["valid_frac"], (7.0, 12))


def test_group_std_keep_mask():
  rewards = jnp.array(
      [
          [1.0, 1.0, 1.0, 1.0],  # std 0: dropped even with min_std = 0.
          [0.0, 0.0, 0.0, 2.0],  # std √3/2 ≈ 0.866.
          [0.0, 0.2, 0.0, 0.2],  # std 0.1.
          [0.0, NAN, NAN, NAN],  # one valid reward: dropped.
      ]
  )
  np.testing.assert_array_equal(
      group_std_keep_mask(rewards, 0.0), [False, True, True, False]
  )
  np.testing.assert_array_equal(
      group_std_keep_mask(rewards, 0.5), [False, True, False, False]
  )


def test_metrics_combine_over_group_shards():
  rng = np.random.default_rng(0)
  rewards = rng.normal(size=(6, 5)).astype(np.float32)
  rewards[1, 2] = np.nan
  rewards[4] = 3.0
  _, full = group_advantages(jnp.asarray(rewards))
  parts = [
      group_advantages(jnp.asarray(part))[1]
      for part in (rewards[:2], rewards[2:])
  ]
  combined = pairs.combine(parts)
  assert set(combined) == set(full)
  for name in full:
    np.testing.assert_allclose(
        combined[name], full[name], rtol=1e-5, atol=1e-5, err_msg=name
    )


def test_jit_and_no_retrace():
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def advantages_fn(rewards):
    adv, metrics = advantages.group_advantages(rewards, scale_by_std=True)
    return adv, metrics, advantages.group_std_keep_mask(rewards, 0.1)

  rng = np.random.default_rng(1)
  for _ in range(3):
    adv, _, keep = advantages_fn(rng.normal(size=(3, 4)).astype(np.float32))
    chex.assert_shape(adv, (3, 4))
    chex.assert_shape(keep, (3,))
  # Traced (non-static) eps and min_std also work.
  jitted = jax.jit(advantages.group_advantages, static_argnames="scale_by_std")
  adv, _ = jitted(jnp.ones((2, 3)), scale_by_std=False, eps=jnp.float32(0.1))
  np.testing.assert_array_equal(adv, 0.0)
  keep = jax.jit(advantages.group_std_keep_mask)(jnp.eye(3), jnp.float32(0.2))
  np.testing.assert_array_equal(keep, [True, True, True])
