"""RLCS evaluation: reward-model agreement and pairwise win rates.

Owns how judges are scored against held-out human-like labels and how two
policies are compared. Besides StoryWorld generation this is the only
module that imports the hidden rater (`data/rater.py`): it is the "human"
judge of policy samples and defines the agreement ceiling.

Interfaces (plain Python on the host; the models behind them are jitted):
  judge_fn(contexts, first, second) -> int array of choices: 1 (first is
    better), 2 (second is better), 0 (format failure). `contexts` are the
    story prompts (the `prompt` field); `genrm.judge.Judge` is one.
  score_fn(prompts, responses) -> float scores, higher is better;
    `trainers.reward_model.make_scorer` returns one.
Pairs are decoded `pairs` records: `id`, `prompt`, `context` (the
structured context, needed by the rater only), `response_1`,
`response_2`, `label` (1 | 2).

Conventions: a format failure counts as a wrong answer in accuracies and
as "no preference" in win rates; ties count 0.5. Win-rate confidence
intervals are 95% Wilson score intervals (default) on n prompts with
wins + ties/2 successes — with ties the Bernoulli variance is an upper
bound, so the interval is conservative; `ci="normal"` gives the normal
approximation mean ± 1.96·s/√n on the per-prompt outcomes {0, ½, 1}
(sample std, clipped to [0, 1]).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from rlcs_jax.data import rater as rater_lib

JudgeFn = Callable[[Sequence[str], Sequence[str], Sequence[str]], np.ndarray]
ScoreFn = Callable[[Sequence[str], Sequence[str]], np.ndarray]
Z_95 = 1.959963984540054  # Two-sided 95% normal quantile.


def _choices(judge_fn: JudgeFn, contexts, first, second) -> np.ndarray:
  out = np.asarray(judge_fn(list(contexts), list(first), list(second)))
  if out.shape != (len(contexts),):
    raise ValueError(
        f"judge_fn returned shape {out.shape} for {len(contexts)} pairs"
    )
  if not np.isin(out, (0, 1, 2)).all():
    raise ValueError(
        f"judge_fn must return choices in {{0, 1, 2}}, got "
        f"{sorted(set(out.tolist()))}"
    )
  return out.astype(np.int32)


def _judge_both_orders(
    judge_fn: JudgeFn, contexts, texts_a, texts_b
) -> tuple[np.ndarray, np.ndarray]:
  """Judges every pair in orders (A, B) and (B, A), in one call.

  Returns (pick_ab, pick_ba): per order, the text picked in A/B terms
  (1 = A, 2 = B, 0 = format failure).
  """
  n = len(contexts)
  c = _choices(
      judge_fn,
      list(contexts) * 2,
      list(texts_a) + list(texts_b),
      list(texts_b) + list(texts_a),
  )
  pick_ab, c_ba = c[:n], c[n:]
  return pick_ab, np.where(c_ba == 0, 0, 3 - c_ba)


def _pair_fields(pairs: Sequence[Mapping[str, Any]]):
  contexts = [p["prompt"] for p in pairs]
  r1 = [p["response_1"] for p in pairs]
  r2 = [p["response_2"] for p in pairs]
  labels = np.array([p["label"] for p in pairs], np.int32)
  if not np.isin(labels, (1, 2)).all():
    raise ValueError("pair labels must be 1 or 2")
  return contexts, r1, r2, labels


def judge_agreement(
    judge_fn: JudgeFn, pairs: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
  """Agreement of a pairwise judge with the labels, in both orders.

  Keys: `accuracy_12` (response_1 shown first), `accuracy_21`, `accuracy`
  (their mean), `consistency` (same story picked in both orders, no
  format failure), `consistent_correct` (consistent and the labelled
  winner), `format_failure_rate` (over all 2n judgements), `n` pairs.
  """
  if not pairs:
    raise ValueError("judge_agreement needs at least one pair")
  contexts, r1, r2, labels = _pair_fields(pairs)
  pick12, pick21 = _judge_both_orders(judge_fn, contexts, r1, r2)
  consistent = (pick12 == pick21) & (pick12 > 0)
  acc12 = float(np.mean(pick12 == labels))
  acc21 = float(np.mean(pick21 == labels))
  return {
      "accuracy_12": acc12,
      "accuracy_21": acc21,
      "accuracy": (acc12 + acc21) / 2,
      "consistency": float(np.mean(consistent)),
      "consistent_correct": float(np.mean(consistent & (pick12 == labels))),
      "format_failure_rate": float(
          np.mean(np.concatenate([pick12, pick21]) == 0)
      ),
      "n": len(pairs),
  }


def _pairwise_outcomes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """1 where a > b, 0 where a < b, 0.5 on ties."""
  return np.where(a > b, 1.0, np.where(a < b, 0.0, 0.5))


def scorer_agreement(
    score_fn: ScoreFn, pairs: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
  """Agreement of a scalar scorer with the labels (ties count 0.5).

  Keys: `accuracy`, `tie_rate`, `n`.
  """
  if not pairs:
    raise ValueError("scorer_agreement needs at least one pair")
  contexts, r1, r2, labels = _pair_fields(pairs)
  n = len(pairs)
  scores = np.asarray(score_fn(contexts * 2, r1 + r2), np.float64)
  if scores.shape != (2 * n,):
    raise ValueError(f"score_fn returned shape {scores.shape} for {2 * n} rows")
  s1, s2 = scores[:n], scores[n:]
  prefers_1 = _pairwise_outcomes(s1, s2)
  correct = np.where(labels == 1, prefers_1, 1.0 - prefers_1)
  return {
      "accuracy": float(np.mean(correct)),
      "tie_rate": float(np.mean(s1 == s2)),
      "n": n,
  }


def _require_context(pair: Mapping[str, Any]) -> Mapping[str, Any]:
  ctx = pair.get("context")
  if not isinstance(ctx, Mapping):
    raise ValueError(
        f"pair {pair.get('id')!r} has no structured `context`; the rater "
        "needs one (StoryWorld pairs have it)"
    )
  return ctx


def rater_ceiling(pairs: Sequence[Mapping[str, Any]], seed: int) -> float:
  """Agreement of the noise-free rater ranking with the noisy labels.

  The best any judge can expect on these labels; `seed` must be the seed
  the labels were made with (`data.storyworld.seed`). Ties count 0.5.
  """
  if not pairs:
    raise ValueError("rater_ceiling needs at least one pair")
  rater = rater_lib.Rater(seed)
  labels = np.array([p["label"] for p in pairs], np.int32)
  s1 = np.array(
      [
          rater.expected_score(_require_context(p), p["response_1"])
          for p in pairs
      ]
  )
  s2 = np.array(
      [
          rater.expected_score(_require_context(p), p["response_2"])
          for p in pairs
      ]
  )
  prefers_1 = _pairwise_outcomes(s1, s2)
  correct = np.where(labels == 1, prefers_1, 1.0 - prefers_1)
  return float(np.mean(correct))


def wilson_interval(
    successes: float, n: int, z: float = Z_95
) -> tuple[float, float]:
  """Wilson score interval for a proportion (successes may be fractional)."""
  if n <= 0:
    return float("nan"), float("nan")
  p = successes / n
  denom = 1.0 + z * z / n
  center = (p + z * z / (2 * n)) / denom
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
  return max(0.0, center - half), min(1.0, center + half)


def normal_interval(
    outcomes: np.ndarray, z: float = Z_95
) -> tuple[float, float]:
  """mean ± z·s/√n on per-item outcomes (sample std), clipped to [0, 1]."""
  n = len(outcomes)
  if n == 0:
    return float("nan"), float("nan")
  mean = float(np.mean(outcomes))
  if n == 1:
    return 0.0, 1.0  # One outcome says nothing about the spread.
  half = z * float(np.std(outcomes, ddof=1)) / math.sqrt(n)
  return max(0.0, mean - half), min(1.0, mean + half)


def win_rate_summary(outcomes: np.ndarray, ci: str = "wilson") -> dict:
  """Win rate, its 95% interval and the counts of per-prompt outcomes."""
  outcomes = np.asarray(outcomes, np.float64)
  n = len(outcomes)
  wins = int(np.sum(outcomes == 1.0))
  losses = int(np.sum(outcomes == 0.0))
  ties = n - wins - losses
  intervals = {
      "wilson": lambda: wilson_interval(wins + 0.5 * ties, n),
      "normal": lambda: normal_interval(outcomes),
  }
  if ci not in intervals:
    raise ValueError(f"ci must be one of {sorted(intervals)}, got {ci!r}")
  low, high = intervals[ci]()
  return {
      "win_rate": float(np.mean(outcomes)) if n else float("nan"),
      "ci_low": low,
      "ci_high": high,
      "n": n,
      "wins": wins,
      "ties": ties,
      "losses": losses,
  }


def _check_lengths(*seqs):
  if len({len(s) for s in seqs}) != 1:
    raise ValueError(
        f"contexts and texts must have equal lengths, got "
        f"{[len(s) for s in seqs]}"
    )


def win_rate_by_rater(
    contexts: Sequence[Mapping[str, Any]],
    texts_a: Sequence[str],
    texts_b: Sequence[str],
    seed: int,
    *,
    ci: str = "wilson",
) -> dict:
  """Win rate of A over B judged by the hidden rater's expected score.

  `contexts` are structured StoryWorld contexts (the `context` field). Per
  prompt A wins if its noise-free score is higher, ties count 0.5.
  """
  _check_lengths(contexts, texts_a, texts_b)
  rater = rater_lib.Rater(seed)
  a = np.array([rater.expected_score(c, t) for c, t in zip(contexts, texts_a)])
  b = np.array([rater.expected_score(c, t) for c, t in zip(contexts, texts_b)])
  out = win_rate_summary(_pairwise_outcomes(a, b), ci)
  out["mean_score_a"] = float(np.mean(a)) if len(a) else float("nan")
  out["mean_score_b"] = float(np.mean(b)) if len(b) else float("nan")
  return out


def win_rate_by_judge(
    judge_fn: JudgeFn,
    contexts: Sequence[str],
    texts_a: Sequence[str],
    texts_b: Sequence[str],
    *,
    ci: str = "wilson",
) -> dict:
  """Win rate of A over B judged by a pairwise judge in both orders.

  `contexts` are story prompts. A wins a prompt if preferred in both
  orders, loses if B is preferred in both, and scores 0.5 otherwise
  (inconsistent verdicts or a format failure). Also reports the judge's
  `consistency` and `format_failure_rate` on these pairs.
  """
  _check_lengths(contexts, texts_a, texts_b)
  if not contexts:
    out = win_rate_summary(np.zeros(0), ci)
    out.update(consistency=float("nan"), format_failure_rate=float("nan"))
    return out
  pick_ab, pick_ba = _judge_both_orders(judge_fn, contexts, texts_a, texts_b)
  outcomes = np.where(
      (pick_ab == 1) & (pick_ba == 1),
      1.0,
      np.where((pick_ab == 2) & (pick_ba == 2), 0.0, 0.5),
  )
  out = win_rate_summary(outcomes, ci)
  out["consistency"] = float(np.mean((pick_ab == pick_ba) & (pick_ab > 0)))
  out["format_failure_rate"] = float(
      np.mean(np.concatenate([pick_ab, pick_ba]) == 0)
  )
  return out
