"""Tests for rlcs_jax.grpo.mixing: RLMR dynamic constraint penalties."""

import functools

import chex
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcs_jax.grpo import advantages
from rlcs_jax.grpo import mixing

NAN = float("nan")
# SPEC §4 counter-example: only the first response is compliant.
W = [1.0, 0.95, 0.0, 0.0]
V = [0.0, 1.0, 1.0, 1.0]

mixed_reward = jax.jit(mixing.mixed_reward, static_argnames="cfg")


@functools.partial(jax.jit, static_argnames=("cfg", "scale_by_std"))
def mixed_advantages(w, v, cfg=mixing.MixConfig(), scale_by_std=True):
  reward, _ = mixing.mixed_reward(w, v, cfg)
  adv, _ = advantages.group_advantages(reward, scale_by_std=scale_by_std)
  return reward, adv


def test_spec_counter_example_breaks_naive_range_but_not_rlmr():
  naive = mixing.MixConfig(rule="naive_range", delta=0.1)
  # λ = max − min + δ = 1.1: r = [1.0, −0.15, −1.1, −1.1], mean −0.3375.
  reward, adv = mixed_advantages(jnp.array([W]), jnp.array([V]), naive)
  np.testing.assert_allclose(reward, [[1.0, -0.15, -1.1, -1.1]], rtol=1e-6)
  np.testing.assert_allclose(jnp.mean(reward), -0.3375, rtol=1e-6)
  assert adv[0, 1] > 0  # The 0.95 violator is rewarded.

  # Ours: μ = 0.4875, λ = 4/(4 − 3) · (0.95 − 0.4875 + 0.1) = 2.25,
  # r = [1.0, −1.3, −2.25, −2.25], mean −1.2: the 0.95 violator is exactly δ
  # below the mean.
  ours = mixing.MixConfig(rule="rlmr", delta=0.1)
  reward, metrics = mixed_reward(jnp.array([W]), jnp.array([V]), ours)
  np.testing.assert_allclose(reward, [[1.0, -1.3, -2.25, -2.25]], rtol=1e-6)
  np.testing.assert_allclose(metrics["lambda_mean"], (2.25, 1), rtol=1e-6)
  np.testing.assert_allclose(metrics["lambda_max"], (2.25, 1), rtol=1e-6)
  np.testing.assert_allclose(metrics["mixed_group_frac"], (1, 1))
  np.testing.assert_allclose(metrics["violator_rate"], (3, 4))
  np.testing.assert_allclose(metrics["violation_mean"], (3.0, 4))
  np.testing.assert_allclose(metrics["writing_mean"], (1.95, 4), rtol=1e-6)
  for scale_by_std in (True, False):
    _, adv = mixed_advantages(
        jnp.array([W]), jnp.array([V]), ours, scale_by_std
    )
    assert np.all(np.asarray(adv)[0, 1:] < 0)
    assert adv[0, 0] > 0


@hypothesis.settings(max_examples=250, deadline=None)
@hypothesis.given(st.data())
def test_every_violator_gets_a_negative_advantage(data):
  """Property (SPEC §4): under "rlmr", 0 < k < G ⇒ every violator has A < 0.

  Each example is one group of G ∈ [2, 16] responses, padded with NaN to 16
  columns so that one compiled function serves every G (NaN responses are
  excluded from all group statistics; test_nan_writing_scores_are_excluded).
  """
  group = data.draw(st.integers(2, 16), label="G")
  finite = st.floats(-1.0, 1.0, width=32, allow_subnormal=False)
  w = np.array(
      data.draw(st.lists(finite, min_size=group, max_size=group), label="w"),
      np.float32,
  )
  v = np.array(
      data.draw(
          st.lists(st.booleans(), min_size=group, max_size=group), label="v"
      ),
      np.float32,
  )
  # Force 0 < k < G.
  one, zero = data.draw(
      st.lists(st.integers(0, group - 1), min_size=2, max_size=2, unique=True),
      label="forced",
  )
  v[one], v[zero] = 1.0, 0.0
  for scale_by_std in (True, False):
    reward, adv = mixed_advantages(
        np.pad(w, (0, 16 - group), constant_values=np.nan)[None],
        np.pad(v, (0, 16 - group))[None],
        scale_by_std=scale_by_std,
    )
    reward = np.asarray(reward)[0, :group]
    adv = np.asarray(adv)[0, :group]
    assert np.all(adv[v > 0] < 0), (w, v, adv)
    # Compliant responses keep their writing score.
    np.testing.assert_array_equal(reward[v == 0], w[v == 0])
    # The worst violator sits δ below the group mean (up to rounding).
    assert np.max(reward[v > 0]) <= np.mean(reward) - 0.1 + 1e-4


def test_fractional_violations_by_hand_and_at_random():
  # μ = 0.55, v̄ = 0.1875; violators above v̄: i=1 needs (0.6 − 0.55 + 0.1) /
  # (0.5 − 0.1875) = 0.48, i=2 needs (0.2 − 0.55 + 0.1) / 0.0625 = −4.
  # λ = 0.48: r = [0.5, 0.36, 0.08, 0.9], mean 0.46 = r_1 + δ.
  w = jnp.array([[0.5, 0.6, 0.2, 0.9]])
  v = jnp.array([[0.0, 0.5, 0.25, 0.0]])
  reward, metrics = mixed_reward(w, v, mixing.MixConfig())
  np.testing.assert_allclose(reward, [[0.5, 0.36, 0.08, 0.9]], rtol=1e-5)
  np.testing.assert_allclose(metrics["lambda_mean"], (0.48, 1), rtol=1e-5)

  # At random: every violator with v_i > v̄ gets A < 0. Groups of 3, 8 and
  # 16 responses, padded with NaN to one shape.
  rng = np.random.default_rng(0)
  w = rng.uniform(-1, 1, size=(600, 16)).astype(np.float32)
  v = rng.choice([0.0, 0.25, 0.5, 1.0], size=(600, 16)).astype(np.float32)
  v[:, 0] = 0.0
  v[:, 1] = np.maximum(v[:, 1], 0.25)
  sizes = np.repeat([3, 8, 16], 200)
  w[np.arange(16)[None, :] >= sizes[:, None]] = np.nan
  _, adv = mixed_advantages(w, v)
  valid = np.isfinite(w)
  v_bar = np.sum(np.where(valid, v, 0), axis=1) / sizes
  above = valid & (v > v_bar[:, None])
  assert np.all(np.asarray(adv)[above] < 0)


def test_no_or_all_violators():
  w = jnp.array([[0.2, 0.8, 0.5], [0.2, 0.8, 0.5]])
  v = jnp.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
  for rule in ("rlmr", "naive_range"):
    reward, metrics = mixed_reward(w, v, mixing.MixConfig(rule=rule))
    np.testing.assert_allclose(reward, w)
    np.testing.assert_allclose(metrics["mixed_group_frac"], (0, 2))
    np.testing.assert_allclose(metrics["lambda_mean"], (0, 0))
    cfg = mixing.MixConfig(rule=rule, all_violate_mode="zero_advantage")
    reward, adv = mixed_advantages(w, v, cfg)
    np.testing.assert_allclose(reward, np.full((2, 3), 0.5), rtol=1e-6)
    np.testing.assert_array_equal(adv, 0.0)


def test_baselines_by_hand():
  w, v = jnp.array([W]), jnp.array([V])
  expected = {
      "single_writing": W,
      "single_constraint": [1.0, 0.0, 0.0, 0.0],
      # ŵ = w here (min 0, max 1): 0.5·ŵ + 0.5·(1 − v).
      "fixed_mix": [1.0, 0.475, 0.0, 0.0],
      # Violators get min(w) − δ = −0.1.
      "floor": [1.0, -0.1, -0.1, -0.1],
  }
  for rule, hand in expected.items():
    reward, _ = mixed_reward(w, v, mixing.MixConfig(rule=rule))
    np.testing.assert_allclose(reward, [hand], rtol=1e-6, err_msg=rule)
  # fixed_mix on a constant group: ŵ = 0.5; α = 0.25 weighs the constraint.
  reward, _ = mixed_reward(
      jnp.array([[0.3, 0.3]]),
      jnp.array([[0.0, 1.0]]),
      mixing.MixConfig(rule="fixed_mix", alpha=0.25),
  )
  np.testing.assert_allclose(reward, [[0.125 + 0.75, 0.125]], rtol=1e-6)


def test_nan_writing_scores_are_excluded():
  w = jnp.array([[1.0, NAN, 0.95, 0.0, 0.0]])
  v = jnp.array([[0.0, 0.0, 1.0, 1.0, 1.0]])
  reward, adv = mixed_advantages(w, v)
  np.testing.assert_allclose(
      reward, [[1.0, NAN, -1.3, -2.25, -2.25]], rtol=1e-6
  )
  assert adv[0, 1] == 0.0
  assert np.all(np.asarray(adv)[0, 2:] < 0)


def _population_std(x):
  return np.sqrt(np.mean((x - x.mean()) ** 2))


def test_z_normalised_writing_scores_and_delta_units():
  """δ is in writing-score units; z-scoring w rescales the effective margin.

  Per group, with σ = population std of w and z = (w − μ)/σ, rlmr on z with
  margin δ equals (r_raw − μ)/σ where r_raw is rlmr on raw w with margin
  σ·δ: std-normalised advantages are identical, Dr. GRPO advantages differ
  by 1/σ. With the same δ on both scales they differ.
  """
  rng = np.random.default_rng(1)
  # Raw groups share σ = 2.5 so one config (δ_raw = σ·δ) serves them all.
  sigma = 2.5
  raw = rng.uniform(0.0, 10.0, size=(3, 6))
  z = (raw - raw.mean(axis=1, keepdims=True)) / np.array(
      [[_population_std(row)] for row in raw]
  )
  w = (rng.uniform(0.0, 10.0, size=(3, 1)) + sigma * z).astype(np.float32)
  z = z.astype(np.float32)
  v = np.array(
      [[0, 1, 0, 1, 1, 0], [1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1]], np.float32
  )
  delta = 0.1
  cfg = mixing.MixConfig(delta=delta)
  reward_z, adv_z = mixed_advantages(z, v, cfg)
  _, adv_z_raw = mixed_advantages(z, v, cfg, scale_by_std=False)
  reward_z, adv_z = np.asarray(reward_z), np.asarray(adv_z)
  # z-scored scores still put every violator below the mean and keep the
  # order of the compliant responses.
  assert np.all(adv_z[v > 0] < 0)
  for row in range(3):
    keep = v[row] == 0
    np.testing.assert_array_equal(
        np.argsort(reward_z[row][keep]), np.argsort(w[row][keep])
    )
  scaled = mixing.MixConfig(delta=sigma * delta)
  reward_raw, adv_raw = mixed_advantages(w, v, scaled)
  _, dr_raw = mixed_advantages(w, v, scaled, scale_by_std=False)
  np.testing.assert_allclose(
      reward_z,
      (reward_raw - w.mean(axis=1, keepdims=True)) / sigma,
      rtol=1e-4,
      atol=1e-4,
  )
  np.testing.assert_allclose(adv_z, adv_raw, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(adv_z_raw, dr_raw / sigma, rtol=1e-4, atol=1e-4)
  # Same δ on raw scores: a smaller relative margin, other advantages.
  _, adv_same_delta = mixed_advantages(w, v, cfg)
  assert np.max(np.abs(np.asarray(adv_same_delta) - adv_z)) > 1e-2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rule": "rlmr2"}, "rule"),
        ({"delta": -0.1}, "delta"),
        ({"delta": float("inf")}, "delta"),
        ({"alpha": 1.5}, "alpha"),
        ({"all_violate_mode": "skip"}, "all_violate_mode"),
    ],
)
def test_config_validation(kwargs, message):
  with pytest.raises(ValueError, match=message):
    mixing.MixConfig(**kwargs)


def test_every_rule_jits_without_retrace():
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(w, v):
    return {
        rule: mixing.mixed_reward(w, v, mixing.MixConfig(rule=rule))
        for rule in mixing.MIX_RULES
    }

  rng = np.random.default_rng(2)
  for _ in range(3):
    out = step(
        rng.uniform(size=(4, 5)).astype(np.float32),
        (rng.uniform(size=(4, 5)) > 0.5).astype(np.float32),
    )
    assert set(out) == set(mixing.MIX_RULES)
    for reward, metrics in out.values():
      chex.assert_shape(reward, (4, 5))
      assert np.all(np.isfinite(reward))
      assert set(metrics) == {
          "lambda_mean",
          "lambda_max",
          "mixed_group_frac",
          "violator_rate",
          "violation_mean",
          "writing_mean",
      }
