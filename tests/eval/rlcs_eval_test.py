"""RLCS evaluation: judge/scorer agreement, rater ceiling, win rates, CIs."""

import random

import numpy as np
import pytest

from rlcs_jax.data import rater as rater_lib
from rlcs_jax.data import storyworld
from rlcs_jax.data import storyworld_continuations as continuations
from rlcs_jax.eval import rlcs_eval

# Hand-made pairs: the labelled winner is the longer story.
PAIRS = [
    {"id": "p0", "prompt": "c0", "response_1": "long one", "response_2": "s",
     "label": 1},
    {"id": "p1", "prompt": "c1", "response_1": "s", "response_2": "long one",
     "label": 2},
    {"id": "p2", "prompt": "c2", "response_1": "longer", "response_2": "x",
     "label": 1},
    {"id": "p3", "prompt": "c3", "response_1": "y", "response_2": "longest",
     "label": 2},
    {"id": "p4", "prompt": "c4", "response_1": "a", "response_2": "bbbb",
     "label": 2},
]  # fmt: skip


def always(choice):
  return lambda contexts, first, second: np.full(len(first), choice)


def longer(contexts, first, second):
  """Position-consistent: picks the longer text (ties -> 1)."""
  return np.array([1 if len(a) >= len(b) else 2 for a, b in zip(first, second)])


def test_always_first_judge_is_pure_position_bias():
  out = rlcs_eval.judge_agreement(always(1), PAIRS)
  frac_1 = 2 / 5
  assert out["accuracy_12"] == pytest.approx(frac_1)
  assert out["accuracy_21"] == pytest.approx(1 - frac_1)
  assert out["accuracy"] == pytest.approx(0.5)
  assert out["consistency"] == 0.0
  assert out["consistent_correct"] == 0.0
  assert out["format_failure_rate"] == 0.0
  assert out["n"] == 5


def test_perfect_and_inverted_judges():
  out = rlcs_eval.judge_agreement(longer, PAIRS)
  for key in ("accuracy_12", "accuracy_21", "accuracy", "consistency"):
    assert out[key] == 1.0
  assert out["consistent_correct"] == 1.0

  inverted = lambda c, a, b: 3 - longer(c, a, b)
  out = rlcs_eval.judge_agreement(inverted, PAIRS)
  assert out["accuracy"] == 0.0
  assert out["consistency"] == 1.0  # Consistently wrong.
  assert out["consistent_correct"] == 0.0


def test_format_failures_count_as_wrong_and_inconsistent():
  out = rlcs_eval.judge_agreement(always(0), PAIRS)
  assert out["format_failure_rate"] == 1.0
  assert out["accuracy"] == 0.0 and out["consistency"] == 0.0

  def half_broken(contexts, first, second):
    # Correct in order (1, 2) (first call half), fails in order (2, 1).
    c = longer(contexts, first, second)
    c[len(c) // 2 :] = 0
    return c

  out = rlcs_eval.judge_agreement(half_broken, PAIRS)
  assert out["accuracy_12"] == 1.0 and out["accuracy_21"] == 0.0
  assert out["format_failure_rate"] == 0.5
  assert out["consistency"] == 0.0


def test_judge_output_is_validated():
  with pytest.raises(ValueError, match=r"\{0, 1, 2\}"):
    rlcs_eval.judge_agreement(always(3), PAIRS)
  with pytest.raises(ValueError, match="shape"):
    rlcs_eval.judge_agreement(lambda c, a, b: np.ones(1), PAIRS)


def test_scorer_agreement_ties_count_half():
  by_length = lambda prompts, texts: np.array([len(t) for t in texts], float)
  out = rlcs_eval.scorer_agreement(by_length, PAIRS)
  assert out == {"accuracy": 1.0, "tie_rate": 0.0, "n": 5}
  constant = lambda prompts, texts: np.zeros(len(texts))
  out = rlcs_eval.scorer_agreement(constant, PAIRS)
  assert out["accuracy"] == 0.5 and out["tie_rate"] == 1.0
  # Prompts reach the scorer aligned with their texts.
  seen = []
  rlcs_eval.scorer_agreement(
      lambda p, t: seen.extend(zip(p, t)) or np.zeros(len(t)), PAIRS[:2]
  )
  assert seen == [
      ("c0", "long one"),
      ("c1", "s"),
      ("c0", "s"),
      ("c1", "long one"),
  ]


@pytest.fixture(scope="module")
def story_pairs():
  """StoryWorld pairs (context, text_1, text_2) with rater expected scores."""
  rng = random.Random(5)
  rater = rater_lib.Rater(3)
  out = []
  for i in range(40):
    ctx = storyworld.sample_context(rng)
    la, lb = continuations.sample_pair_levels(rng)
    t1 = continuations.continuation(ctx, la, rng)
    t2 = continuations.continuation(ctx, lb, rng)
    e1, e2 = rater.expected_score(ctx, t1), rater.expected_score(ctx, t2)
    out.append((ctx, t1, t2, e1, e2))
  return out


def _pairs_with_labels(story_pairs, label_fn):
  return [
      {
          "id": f"s{i}",
          "prompt": storyworld.build_policy_prompt(ctx),
          "context": ctx,
          "response_1": t1,
          "response_2": t2,
          "label": label_fn(e1, e2),
      }
      for i, (ctx, t1, t2, e1, e2) in enumerate(story_pairs)
  ]


def test_rater_ceiling(story_pairs):
  noise_free = _pairs_with_labels(story_pairs, lambda a, b: 1 if a > b else 2)
  assert rlcs_eval.rater_ceiling(noise_free, seed=3) == 1.0
  flipped = _pairs_with_labels(story_pairs, lambda a, b: 2 if a > b else 1)
  assert rlcs_eval.rater_ceiling(flipped, seed=3) == 0.0
  # Noisy labels from the same rater: well below 1, well above chance.
  rng = random.Random(0)
  rater = rater_lib.Rater(3)
  noisy = [
      dict(p, label=rater.label_pair(p["context"], p["response_1"],
                                     p["response_2"], rng))
      for p in noise_free
  ]  # fmt: skip
  acc = rlcs_eval.rater_ceiling(noisy, seed=3)
  assert 0.5 < acc < 1.0
  with pytest.raises(ValueError, match="p0"):
    rlcs_eval.rater_ceiling(PAIRS, seed=3)  # No structured context.


def test_win_rate_by_rater(story_pairs):
  ctxs = [p[0] for p in story_pairs]
  a = [p[1] for p in story_pairs]
  b = [p[2] for p in story_pairs]
  wins = sum(p[3] > p[4] for p in story_pairs)
  out = rlcs_eval.win_rate_by_rater(ctxs, a, b, seed=3)
  assert out["n"] == 40 and out["wins"] == wins and out["ties"] == 0
  assert out["win_rate"] == pytest.approx(wins / 40)
  assert out["ci_low"] < out["win_rate"] < out["ci_high"]
  swapped = rlcs_eval.win_rate_by_rater(ctxs, b, a, seed=3)
  assert swapped["win_rate"] == pytest.approx(1 - wins / 40)
  same = rlcs_eval.win_rate_by_rater(ctxs, a, a, seed=3)
  assert same["win_rate"] == 0.5 and same["ties"] == 40


def test_win_rate_by_judge_needs_both_orders():
  ctx = ["c"] * 4
  a = ["aaaa", "aaaa", "a", "aa"]
  b = ["b", "bb", "bbbb", "bb"]
  # Consistent judge: A wins 2, loses 1, one tie (equal length -> picks
  # position 1 in both orders = inconsistent).
  out = rlcs_eval.win_rate_by_judge(longer, ctx, a, b)
  assert (out["wins"], out["losses"], out["ties"]) == (2, 1, 1)
  assert out["win_rate"] == pytest.approx(2.5 / 4)
  assert out["consistency"] == pytest.approx(3 / 4)
  # A position-biased judge never decides a prompt.
  out = rlcs_eval.win_rate_by_judge(always(1), ctx, a, b)
  assert out["win_rate"] == 0.5 and out["ties"] == 4
  out = rlcs_eval.win_rate_by_judge(always(0), ctx, a, b)
  assert out["win_rate"] == 0.5 and out["format_failure_rate"] == 1.0


def test_wilson_interval_known_values():
  lo, hi = rlcs_eval.wilson_interval(5, 10)
  assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)
  assert rlcs_eval.wilson_interval(10, 10) == pytest.approx(
      (0.7225, 1.0), abs=1e-4
  )
  assert rlcs_eval.wilson_interval(0, 10) == pytest.approx(
      (0.0, 0.2775), abs=1e-4
  )
  assert np.isnan(rlcs_eval.wilson_interval(0, 0)).all()


def test_win_rate_summary_interval_methods():
  outcomes = np.array([1.0] * 5 + [0.0] * 5)
  w = rlcs_eval.win_rate_summary(outcomes)
  assert (w["ci_low"], w["ci_high"]) == pytest.approx(
      (0.2366, 0.7634), abs=1e-4
  )
  n = rlcs_eval.win_rate_summary(outcomes, ci="normal")
  half = 1.959964 * np.sqrt(0.25 * 10 / 9) / np.sqrt(10)
  assert (n["ci_low"], n["ci_high"]) == pytest.approx(
      (0.5 - half, 0.5 + half), abs=1e-6
  )
  # Ties: Wilson treats 4 ties as 2 wins; the normal interval sees that
  # ties vary less than a win/loss coin and is narrower.
  tied = np.array([1.0, 1.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5])
  w = rlcs_eval.win_rate_summary(tied)
  n = rlcs_eval.win_rate_summary(tied, ci="normal")
  assert (w["wins"], w["ties"], w["losses"]) == (2, 4, 2)
  assert w["win_rate"] == 0.5
  assert w["ci_high"] - w["ci_low"] > n["ci_high"] - n["ci_low"]
  with pytest.raises(ValueError, match="wilson"):
    rlcs_eval.win_rate_summary(tied, ci="exact")
