"""Pivot rewards: values, one pivot per group, orders, modes."""

import numpy as np
import pytest

from rlcs_jax.genrm import pivot


def _quality_judge(log):
  """Prefers the text with the larger number; records presentation."""

  def judge(contexts, first, second):
    log.extend(zip(first, second))
    return np.array(
        [1 if int(a) > int(b) else 2 for a, b in zip(first, second)]
    )

  return judge


def test_pivot_values_and_single_zero_per_group():
  rng = np.random.default_rng(0)
  for trial in range(20):
    g = int(rng.integers(2, 7))
    texts = [str(x) for x in rng.permutation(100)[: 3 * g]]
    log = []
    rewards, stats = pivot.pivot_rewards(
        ["c"] * len(texts), texts, g, _quality_judge(log), rng
    )
    r = rewards.reshape(3, g)
    assert set(np.unique(r)) <= {-1.0, 0.0, 1.0}
    assert ((r == 0).sum(axis=1) == 1).all()  # Exactly the pivot.
    assert stats.comparisons == 3 * (g - 1) == len(log)
    for grp in range(3):
      vals = [int(t) for t in texts[grp * g : (grp + 1) * g]]
      piv = vals[int(np.flatnonzero(r[grp] == 0)[0])]
      for v, x in zip(vals, r[grp]):
        if v != piv:
          assert x == (1.0 if v > piv else -1.0)


def test_random_presentation_order():
  rng = np.random.default_rng(1)
  log = []
  texts = [str(i) for i in range(40)]
  pivot.pivot_rewards(["c"] * 40, texts, 4, _quality_judge(log), rng)
  # The candidate appears first in some comparisons and second in others.
  firsts = {a for a, _ in log}
  seconds = {b for _, b in log}
  assert firsts & seconds


def test_both_orders_disagreement_gives_zero():
  rng = np.random.default_rng(2)
  always_first = lambda c, a, b: np.ones(len(a), int)  # Position bias.
  rewards, stats = pivot.pivot_rewards(
      ["c"] * 4,
      ["1", "2", "3", "4"],
      4,
      always_first,
      rng,
      mode="pivot_both_orders",
  )
  assert (rewards == 0).all() and stats.disagreements == 3
  rewards, _ = pivot.pivot_rewards(
      ["c"] * 4,
      ["1", "2", "3", "4"],
      4,
      _quality_judge([]),
      rng,
      mode="pivot_both_orders",
  )
  assert sorted(rewards) != [0, 0, 0, 0] and (rewards == 0).sum() >= 1


def test_fixed_reference_and_round_robin():
  rng = np.random.default_rng(3)
  texts = ["10", "30", "20", "40"]
  rewards, _ = pivot.pivot_rewards(
      ["c"] * 4,
      texts,
      2,
      _quality_judge([]),
      rng,
      mode="fixed_reference",
      references=["25"] * 4,
  )
  np.testing.assert_array_equal(rewards, [-1, 1, -1, 1])
  rewards, stats = pivot.pivot_rewards(
      ["c"] * 4, texts, 4, _quality_judge([]), rng, mode="round_robin"
  )
  # 10 loses all 3, 40 wins all 3; 20: 1 win 2 losses; 30: 2 wins 1 loss.
  np.testing.assert_allclose(rewards, [-1, 1 / 3, -1 / 3, 1])
  assert stats.comparisons == 6


def test_format_failures_count_as_no_preference():
  rng = np.random.default_rng(4)
  broken = lambda c, a, b: np.zeros(len(a), int)
  rewards, stats = pivot.pivot_rewards(
      ["c"] * 4, ["1", "2", "3", "4"], 4, broken, rng
  )
  assert (rewards == 0).all() and stats.format_failures == 3
  with pytest.raises(ValueError, match="pivot mode"):
    pivot.pivot_rewards(["c"], ["1"], 1, broken, rng, mode="nope")
