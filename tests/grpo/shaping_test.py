"""Tests for rlcs_jax.grpo.shaping: RLCS entropy-based reward shaping."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcs_jax.grpo import advantages
from rlcs_jax.grpo import shaping

NAN = float("nan")
H_QUARTER = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))  # 0.8113 bits

apply_shaping = jax.jit(
    shaping.apply_shaping, static_argnames=("cfg", "scale_by_std")
)
group_advantages = jax.jit(
    advantages.group_advantages, static_argnames="scale_by_std"
)


def test_four_corners_by_hand():
  # λ = 0.5: correct gets 0.5 + 0.5·Ĥ, wrong gets −(0.5 + 0.5·(1 − Ĥ)).
  correct = jnp.array([1, 1, 0, 0, 1, 0])
  entropy = jnp.array([0.0, 1.0, 0.0, 1.0, 0.25, 0.25])
  reward = shaping.shaped_reward(correct, entropy, 0.5)
  np.testing.assert_allclose(
      reward, [0.5, 1.0, -1.0, -0.5, 0.625, -0.875], rtol=1e-6
  )
  weight = shaping.shaping_weight(correct, entropy, 0.5)
  np.testing.assert_allclose(
      weight, [0.5, 1.0, 1.0, 0.5, 0.625, 0.875], rtol=1e-6
  )
  # λ_min = 1 switches shaping off: plain ±1.
  np.testing.assert_allclose(
      shaping.shaped_reward(correct, entropy, 1.0), [1, 1, -1, -1, 1, -1]
  )


@pytest.mark.parametrize("lambda_min", [0.0, 0.3, 0.5, 0.9])
def test_orderings(lambda_min):
  h = jnp.array([0.0, 0.2, 0.7, 1.0])
  right = shaping.shaped_reward(jnp.ones(4), h, lambda_min)
  wrong = shaping.shaped_reward(jnp.zeros(4), h, lambda_min)
  # Uncertain-correct > confident-correct; confident-wrong < uncertain-wrong.
  assert np.all(np.diff(right) > 0)
  assert np.all(np.diff(wrong) > 0)
  # Every correct judgement beats every wrong one unless λ = 0 lets both
  # reach 0 (correct with Ĥ = 0, wrong with Ĥ = 1).
  assert right.min() >= wrong.max()
  np.testing.assert_allclose(right, shaping.shaping_weight(1, h, lambda_min))
  np.testing.assert_allclose(wrong, -shaping.shaping_weight(0, h, lambda_min))


def test_entropy_sources_by_hand():
  logits = jnp.array(
      [[0.0, 0.0], [math.log(3.0), 0.0], [0.0, -jnp.inf], [30.0, -30.0]]
  )
  np.testing.assert_allclose(
      jax.jit(shaping.verdict_entropy)(logits),
      [1.0, H_QUARTER, 0.0, 0.0],
      rtol=1e-5,
      atol=1e-6,
  )
  # V = 4: ln 4 and ½ ln 4 average to ¾ of ln V; the masked token is
  # ignored; an empty row gives 0.
  entropy_bl = jnp.array(
      [[math.log(4), 0.5 * math.log(4), 99.0], [1.0, 1.0, 1.0]]
  )
  mask = jnp.array([[1, 1, 0], [0, 0, 0]])
  np.testing.assert_allclose(
      jax.jit(shaping.response_mean_entropy)(entropy_bl, mask, 4),
      [0.75, 0.0],
      rtol=1e-6,
  )
  choice = jnp.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [2, 1, 1, 2]])
  valid = jnp.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]])
  votes = jax.jit(shaping.group_vote_entropy)(choice, valid)
  # Last group: valid votes (2, 1, 1) → f = 2/3, labels 1/2 work as well.
  h_third = -(math.log2(1 / 3) / 3 + 2 * math.log2(2 / 3) / 3)
  expected = [1.0, 0.0, H_QUARTER, h_third]
  np.testing.assert_allclose(
      votes, np.repeat(np.array(expected)[:, None], 4, axis=1), rtol=1e-5
  )


def test_apply_shaping_targets_by_hand():
  # One group: correct/confident, correct/uncertain, wrong/confident, and a
  # format failure (its entropy is NaN and must be ignored). λ = 0.5.
  correct = jnp.array([[1, 1, 0, 1]])
  format_ok = jnp.array([[True, True, True, False]])
  entropy = jnp.array([[0.0, 1.0, 0.0, NAN]])
  expected = {
      # shaped rewards [0.5, 1, −1, −1], mean −0.125.
      "reward": (
          [0.5, 1.0, -1.0, -1.0],
          [0.625, 1.125, -0.875, -0.875],
          [1, 1, 1, 1],
      ),
      # ±1 rewards, mean 0, advantages times the magnitudes [0.5, 1, 1, 1].
      "advantage": ([1, 1, -1, -1], [0.5, 1, -1, -1], [1, 1, 1, 1]),
      "loss_weight": ([1, 1, -1, -1], [1, 1, -1, -1], [0.5, 1, 1, 1]),
      "none": ([1, 1, -1, -1], [1, 1, -1, -1], [1, 1, 1, 1]),
  }
  for target, (rewards_hand, adv_hand, weight_hand) in expected.items():
    cfg = shaping.ShapingConfig(lambda_min=0.5, target=target)
    rewards, adv, weight, metrics = apply_shaping(
        correct, format_ok, entropy, cfg, scale_by_std=False
    )
    np.testing.assert_allclose(rewards, [rewards_hand], err_msg=target)
    np.testing.assert_allclose(adv, [adv_hand], rtol=1e-6, err_msg=target)
    np.testing.assert_allclose(weight, [weight_hand], err_msg=target)
    np.testing.assert_allclose(metrics["accuracy"], (2, 4))
    np.testing.assert_allclose(metrics["format_failure_rate"], (1, 4))
    np.testing.assert_allclose(metrics["entropy_mean"], (1.0, 3))
    np.testing.assert_allclose(metrics["shaping_weight_mean"], (2.5, 3))
    np.testing.assert_allclose(metrics["shaped_reward_mean"], (-0.5, 4))
    np.testing.assert_allclose(metrics["unshaped_reward_mean"], (0.0, 4))
    # Within-group variances: shaped ¼·(0.625² + 1.125² + 2·0.875²) =
    # 0.796875, unshaped 1.
    np.testing.assert_allclose(
        metrics["shaped_reward_group_var"], (0.796875, 1), rtol=1e-6
    )
    np.testing.assert_allclose(metrics["unshaped_reward_group_var"], (1, 1))
    np.testing.assert_allclose(
        metrics["adv_mean"], (np.sum(adv_hand), 4), atol=1e-6
    )
  # A custom format-failure reward.
  cfg = shaping.ShapingConfig(target="none", format_failure_reward=-2.0)
  rewards, _, _, _ = apply_shaping(correct, format_ok, entropy, cfg)
  np.testing.assert_allclose(rewards, [[1, 1, -1, -2]])


def test_group_constant_factor_cancels_under_std_normalisation():
  """A factor constant within a group cancels under group normalisation.

  (1) Multiplying every reward of a group by one positive m gives
  (m·r − m·μ) / (m·σ + eps) = (r − μ) / (σ + eps/m): the same advantages up
  to eps. (2) Shaping the reward with `group_vote_entropy` (one Ĥ per group)
  maps correct → λ + (1−λ)Ĥ and wrong → −(λ + (1−λ)(1−Ĥ)): an increasing
  affine map of the binary correctness within the group, so the z-scores
  are the same as with plain ±1 rewards (in a group without format
  failures, whose third reward value breaks the two-point argument). Hence
  with std normalisation target="reward" with group_vote entropy is a no-op,
  as SPEC §3 notes, and group_vote acts only through the `loss_weight`
  target (or the advantage target / Dr. GRPO's unscaled advantages, where
  magnitudes survive).
  """
  rng = np.random.default_rng(0)
  rewards = rng.normal(size=(5, 8)).astype(np.float32)
  multiplier = rng.uniform(0.1, 3.0, size=(5, 1)).astype(np.float32)
  base, _ = group_advantages(jnp.asarray(rewards))
  scaled, _ = group_advantages(jnp.asarray(rewards * multiplier))
  np.testing.assert_allclose(scaled, base, rtol=1e-4, atol=1e-4)
  # Without std scaling (Dr. GRPO) the multiplier does not cancel.
  base_raw, _ = group_advantages(jnp.asarray(rewards), scale_by_std=False)
  scaled_raw, _ = group_advantages(
      jnp.asarray(rewards * multiplier), scale_by_std=False
  )
  np.testing.assert_allclose(scaled_raw, base_raw * multiplier, rtol=1e-5)

  choice = jnp.asarray(rng.integers(0, 2, size=(5, 8)))
  correct = jnp.asarray(rng.integers(0, 2, size=(5, 8)))
  format_ok = jnp.ones((5, 8), bool)
  vote_h = jax.jit(shaping.group_vote_entropy)(choice)
  chex.assert_trees_all_close(vote_h, vote_h[:, :1] * jnp.ones((1, 8)))
  plain = shaping.ShapingConfig(target="none")
  _, adv_plain, _, _ = apply_shaping(correct, format_ok, vote_h, plain)
  cfg = shaping.ShapingConfig(lambda_min=0.2, target="reward")
  _, adv_shaped, weight, _ = apply_shaping(correct, format_ok, vote_h, cfg)
  np.testing.assert_allclose(adv_shaped, adv_plain, rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(weight, 1.0)
  # As a loss weight it does act.
  cfg = shaping.ShapingConfig(lambda_min=0.5, target="loss_weight")
  _, adv_lw, weight, _ = apply_shaping(correct, format_ok, vote_h, cfg)
  np.testing.assert_allclose(adv_lw, adv_plain, rtol=1e-6)
  np.testing.assert_allclose(
      weight,
      jax.jit(shaping.shaping_weight)(correct, vote_h, 0.5),
      rtol=1e-6,
  )
  assert np.std(np.asarray(weight)) > 0.05


def test_shaping_changes_std_normalised_advantages_with_per_sample_entropy():
  # Guard for the test above: per-sample entropy does move the advantages.
  correct = jnp.array([[1, 1, 0, 0]])
  entropy = jnp.array([[0.0, 1.0, 0.0, 1.0]])
  ok = jnp.ones((1, 4), bool)
  _, adv_shaped, _, _ = apply_shaping(
      correct,
      ok,
      entropy,
      shaping.ShapingConfig(target="reward"),
      scale_by_std=False,
  )
  _, adv_plain, _, _ = apply_shaping(
      correct,
      ok,
      entropy,
      shaping.ShapingConfig(target="none"),
      scale_by_std=False,
  )
  assert np.max(np.abs(np.asarray(adv_shaped - adv_plain))) > 0.1
  # Uncertain-correct above confident-correct, confident-wrong lowest.
  a = np.asarray(adv_shaped)[0]
  assert a[1] > a[0] > a[3] > a[2]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lambda_min": 1.5}, "lambda_min"),
        ({"lambda_min": -0.1}, "lambda_min"),
        ({"target": "weights"}, "target"),
        ({"format_failure_reward": float("-inf")}, "format_failure_reward"),
    ],
)
def test_config_validation(kwargs, message):
  with pytest.raises(ValueError, match=message):
    shaping.ShapingConfig(**kwargs)


def test_every_function_jits_without_retrace():
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(correct, ok, logits, choice, lam):
    entropy = shaping.verdict_entropy(logits.reshape(-1, 2)).reshape(2, 3)
    entropy = 0.5 * (entropy + shaping.group_vote_entropy(choice, ok))
    return (
        shaping.shaped_reward(correct, entropy, lam),
        shaping.shaping_weight(correct, entropy, lam),
        shaping.apply_shaping(
            correct, ok, entropy, shaping.ShapingConfig(target="advantage")
        ),
    )

  rng = np.random.default_rng(3)
  for _ in range(3):
    out = step(
        rng.integers(0, 2, size=(2, 3)),
        rng.random((2, 3)) > 0.2,
        rng.normal(size=(2, 3, 2)).astype(np.float32),
        rng.integers(0, 2, size=(2, 3)),
        np.float32(rng.uniform()),
    )
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(out))
  entropy = jax.jit(shaping.response_mean_entropy)(
      jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.int32(8)
  )
  np.testing.assert_allclose(entropy, 1 / math.log(8), rtol=1e-6)
