"""The reward API: functions of completions, weighted, logged per component.

A reward function receives a `RewardBatch` (prompts, decoded completions,
completion token ids, truncation flags and the dataset's extra columns) and
returns one float per completion; NaN means "not applicable" (that component
is left out of the weighted sum for that completion, and a completion where
every component is NaN gets NaN, which GRPO excludes from its group).

Model-based rewards (GenRM judging, scalar RM) are ordinary reward functions
built by a factory that closes over their parameters and the jitted sampler,
so they batch all completions of a step into one call.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Sequence

import numpy as np

from rlcs_jax.verifiers import scoring


@dataclasses.dataclass
class RewardBatch:
  """Everything a reward function may look at, for N = P * R completions."""

  prompts: list[str]
  completions: list[str]
  completion_ids: list[list[int]]
  truncated: np.ndarray  # [N] bool
  records: list[dict[str, Any]]  # The dataset row of each completion.
  group_size: int  # R: completions i*R .. i*R+R-1 share a prompt.


RewardFn = Callable[[RewardBatch], np.ndarray]


@dataclasses.dataclass(frozen=True)
class RewardComponent:
  name: str
  fn: RewardFn
  weight: float


def evaluate(
    components: Sequence[RewardComponent], batch: RewardBatch
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """Returns (weighted total [N], {name: raw values [N]})."""
  n = len(batch.completions)
  parts = {}
  total = np.zeros(n, np.float64)
  seen = np.zeros(n, bool)
  for c in components:
    values = np.asarray(c.fn(batch), np.float64)
    if values.shape != (n,):
      raise ValueError(
          f"reward {c.name!r} returned shape {values.shape}, "
          f"expected ({n},)"
      )
    parts[c.name] = values
    ok = ~np.isnan(values)
    total[ok] += c.weight * values[ok]
    seen |= ok
  total[~seen] = np.nan
  return total.astype(np.float32), parts


def component_stats(parts: dict[str, np.ndarray]) -> dict[str, float]:
  """Mean and std of each component over its applicable completions."""
  out = {}
  for name, v in parts.items():
    v = v[~np.isnan(v)]
    out[f"reward/{name}_mean"] = float(v.mean()) if v.size else math.nan
    out[f"reward/{name}_std"] = float(v.std()) if v.size else math.nan
  return out


_WORD = re.compile(r"\S+")


def target_length(target_words: int) -> RewardFn:
  """1 at exactly `target_words` words, falling linearly to 0 at 0 or 2x."""

  def fn(batch: RewardBatch) -> np.ndarray:
    n = np.array([len(_WORD.findall(c)) for c in batch.completions])
    return np.clip(1.0 - np.abs(n - target_words) / target_words, 0.0, 1.0)

  return fn


def required_word(column: str = "required_word") -> RewardFn:
  """1 if the record's `column` word appears in the completion, else 0."""

  def fn(batch: RewardBatch) -> np.ndarray:
    out = []
    for c, r in zip(batch.completions, batch.records):
      word = r.get(column)
      out.append(
          np.nan
          if not word
          else float(re.search(rf"\b{re.escape(word)}\b", c, re.I) is not None)
      )
    return np.array(out)

  return fn


def constraint_pass(mode: str = "strict") -> RewardFn:
  """Fraction of the record's IFEval instructions followed (NaN if none)."""

  def fn(batch: RewardBatch) -> np.ndarray:
    out = []
    for c, r in zip(batch.completions, batch.records):
      ids = r.get("instruction_id_list") or []
      if not ids:
        out.append(np.nan)
        continue
      ok = scoring.check_prompt(
          ids, r["kwargs"], c, prompt=r["prompt"], mode=mode
      )
      out.append(float(np.mean(ok)))
    return np.array(out)

  return fn


def constraint_violation(mode: str = "strict", kind: str = "any") -> RewardFn:
  """RLMR's v_i: 1 if any instruction fails (or the fraction failed)."""

  def fn(batch: RewardBatch) -> np.ndarray:
    return np.array(
        [
            scoring.violation(
                r.get("instruction_id_list") or [],
                r.get("kwargs") or [],
                c,
                prompt=r["prompt"],
                mode=mode,
                kind=kind,
            )
            for c, r in zip(batch.completions, batch.records)
        ]
    )

  return fn
