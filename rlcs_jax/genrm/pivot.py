"""Policy rewards from pairwise GenRM judgements (RLCS, SPEC §3).

Modes (all judgements of a step go to the judge in one batched call):
  pivot            one random completion per group is the pivot (reward 0);
                   every other one is judged against it in a random
                   presentation order: +1 if preferred, -1 if not.
  pivot_both_orders  as pivot, judged in both orders; if the two verdicts
                   disagree (position bias) the reward is 0.
  fixed_reference  every completion is judged against the record's
                   `reference` continuation (random order): +1 / -1.
  round_robin      every pair in the group is judged (random order); a
                   completion's reward is its mean over its comparisons of
                   +1 (win) / -1 (loss).
A format failure of the judge counts as no preference (0 for that
comparison) and is counted in the returned statistics.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Sequence

import numpy as np

PIVOT_MODES = ("pivot", "pivot_both_orders", "fixed_reference", "round_robin")

# judge_fn(contexts, first, second) -> choices in {1, 2, 0}
JudgeFn = Callable[[Sequence[str], Sequence[str], Sequence[str]], np.ndarray]


@dataclasses.dataclass
class PivotStats:
  comparisons: int = 0
  format_failures: int = 0
  disagreements: int = 0  # pivot_both_orders only.


@dataclasses.dataclass(frozen=True)
class _Comparison:
  a: int  # Row index of the candidate (or -1 for the reference).
  b: int
  a_first: bool


def pivot_rewards(
    contexts: Sequence[str],
    completions: Sequence[str],
    group_size: int,
    judge_fn: JudgeFn,
    rng: np.random.Generator,
    *,
    mode: str = "pivot",
    references: Sequence[str] | None = None,
) -> tuple[np.ndarray, PivotStats]:
  """Rewards [N] in [-1, 1] for N = P * group_size completions."""
  if mode not in PIVOT_MODES:
    raise ValueError(f"pivot mode must be one of {PIVOT_MODES}, got {mode!r}")
  n = len(completions)
  if n % group_size:
    raise ValueError(f"{n} completions is not a multiple of {group_size}")
  if mode == "fixed_reference" and references is None:
    raise ValueError("fixed_reference mode needs the records' references")
  comps: list[_Comparison] = []
  for g in range(n // group_size):
    rows = list(range(g * group_size, (g + 1) * group_size))
    if mode in ("pivot", "pivot_both_orders"):
      pivot = rows[int(rng.integers(group_size))]
      for r in rows:
        if r == pivot:
          continue
        if mode == "pivot":
          comps.append(_Comparison(r, pivot, bool(rng.integers(2))))
        else:
          comps += [_Comparison(r, pivot, True), _Comparison(r, pivot, False)]
    elif mode == "fixed_reference":
      comps += [_Comparison(r, -1, bool(rng.integers(2))) for r in rows]
    else:
      comps += [
          _Comparison(a, b, bool(rng.integers(2)))
          for a, b in itertools.combinations(rows, 2)
      ]

  first, second, ctx = [], [], []
  for c in comps:
    a_text, b_text = completions[c.a], (
        references[c.a] if c.b == -1 else completions[c.b]
    )
    first.append(a_text if c.a_first else b_text)
    second.append(b_text if c.a_first else a_text)
    ctx.append(contexts[c.a])
  choices = np.asarray(judge_fn(ctx, first, second)) if comps else np.zeros(0)
  # +1: a preferred, -1: b preferred, 0: format failure.
  a_wins = np.array(
      [
          0 if ch == 0 else (1 if (ch == 1) == c.a_first else -1)
          for ch, c in zip(choices, comps)
      ],
      np.float32,
  )
  stats = PivotStats(
      comparisons=len(comps), format_failures=int(np.sum(choices == 0))
  )
  rewards = np.zeros(n, np.float32)
  if mode == "pivot_both_orders":
    for i in range(0, len(comps), 2):
      c, (x, y) = comps[i], a_wins[i : i + 2]
      agree = x == y and x != 0
      stats.disagreements += int(x != y)
      rewards[c.a] = x if agree else 0.0
  elif mode == "round_robin":
    totals = np.zeros(n, np.float32)
    counts = np.zeros(n, np.float32)
    for w, c in zip(a_wins, comps):
      totals[c.a] += w
      totals[c.b] -= w
      counts[c.a] += 1
      counts[c.b] += 1
    rewards = totals / np.maximum(counts, 1)
  else:
    for w, c in zip(a_wins, comps):
      rewards[c.a] = w
  return rewards, stats
