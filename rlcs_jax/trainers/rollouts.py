"""GRPO rollouts on the host: the batch, its sequences, its metrics.

`Rollout` is one step's sampled and scored batch (P groups of R completions)
as `GRPOTrainer.rollout` assembles it; `build_sequences` lays out the prompt
+ completion token arrays the update consumes; `rollout_metrics` and
`rollout_arrays` are what a step logs and what a skipped step saves.
`max_prompt_tokens` is the longest prompt the sampler can fit, checked
before sampling.

Shape legend: P prompts, R completions per prompt, B = P*R rows,
Lp padded prompt length, T max new tokens, L = Lp + T.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from rlcs_jax.sampler import sampling
from rlcs_jax.trainers import rewards as rewards_lib

if TYPE_CHECKING:
  from rlcs_jax.trainers import grpo


def max_prompt_tokens(
    max_seq_len: int, max_new_tokens: int, buckets: Sequence[int]
) -> int:
  """Longest prompt the sampler accepts: its padded length (a bucket, or a
  multiple of the largest bucket) plus `max_new_tokens` must fit the model."""
  room = max_seq_len - max_new_tokens
  top = buckets[-1]
  fits = [b for b in buckets if b <= room]
  if room >= top:
    fits.append(room // top * top)
  return max(fits, default=0)


@dataclasses.dataclass
class Rollout:
  """One step's training batch on the host (B = P*R rows)."""

  records: list[dict[str, Any]]  # Per row.
  prompts: list[str]  # Per row.
  completions: list[str]
  tokens: np.ndarray  # [B, L] prompt (left padded) + completion
  valid: np.ndarray  # [B, L]
  mask: np.ndarray  # [B, T] completion tokens that count in the loss
  lengths: np.ndarray  # [B]
  truncated: np.ndarray  # [B]
  rewards: np.ndarray  # [P, R] (NaN = excluded)
  parts: dict[str, np.ndarray]
  prompt_len: int
  kept_groups: int
  drawn_groups: int


def build_sequences(
    prompt_ids: Sequence[Sequence[int]],
    comp_tokens,
    lengths,
    pad_id: int,
    prompt_len: int,
):
  """Left-padded prompt + completion -> tokens [B, L], valid [B, L], mask."""
  ptoks, pvalid = sampling.pad_prompts(prompt_ids, prompt_len, pad_id, "left")
  t = comp_tokens.shape[1]
  cmask = np.arange(t)[None, :] < np.asarray(lengths)[:, None]
  tokens = np.concatenate([ptoks, np.where(cmask, comp_tokens, pad_id)], 1)
  valid = np.concatenate([pvalid, cmask], 1)
  return tokens.astype(np.int32), valid, cmask


def rollout_arrays(roll: Rollout) -> dict[str, Any]:
  """A rollout's host data, as saved for a skipped (non-finite) step."""
  out = {
      f.name: getattr(roll, f.name)
      for f in dataclasses.fields(roll)
      if f.name != "parts"
  }
  out.update({f"reward_{k}": v for k, v in roll.parts.items()})
  return out


def rollout_metrics(roll: Rollout, cfg: grpo.GRPOConfig) -> dict[str, float]:
  r = roll.rewards
  finite = r[np.isfinite(r)]
  stds = np.nanstd(r, axis=1)
  out = {
      "reward_mean": float(finite.mean()) if finite.size else float("nan"),
      "reward_std": float(finite.std()) if finite.size else float("nan"),
      "zero_std_group_frac": float(np.mean(stds < 1e-8)),
      "response_length": float(roll.lengths.mean()),
      "truncation_rate": float(roll.truncated.mean()),
      "kept_group_frac": roll.kept_groups / cfg.num_prompts,
      "prompts_drawn": float(roll.drawn_groups),
  }
  out.update(rewards_lib.component_stats(roll.parts))
  return out
