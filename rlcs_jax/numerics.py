"""Numerics guard: skip non-finite updates, count them, stop after N in a row.

Owns what a trainer does when a step's loss or gradients are NaN/inf. Inside
the jitted step, `keep_if_finite` selects the old parameters and optimizer
state, so a bad batch leaves the model untouched and the step reports
`skipped = 1`. On the host, `SkipGuard` reads that metric (one step late,
with the rest of the metrics), saves the offending batch to
`<stage dir>/bad_batch_step<N>.npz` for inspection, and raises
`TooManySkippedUpdatesError` naming the steps after `max_consecutive` skipped
updates in a row. A single bad batch is survivable; a diverged run is not
silently continued.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any, Mapping

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from rlcs_jax import metrics as metrics_lib


class TooManySkippedUpdatesError(metrics_lib.NonFiniteLossError):
  """Raised after `max_consecutive` skipped (non-finite) updates in a row."""


def keep_if_finite(finite: jax.Array, new: Any, old: Any) -> Any:
  """`new` where `finite` (a scalar bool) else `old`, leaf by leaf."""
  return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)


def bad_batch_path(stage_dir: str, step: int) -> str:
  """Where the batch of a skipped step is saved (one file per process)."""
  suffix = "" if jax.process_index() == 0 else f".process{jax.process_index()}"
  return os.path.join(stage_dir, f"bad_batch_step{step}{suffix}.npz")


def _savable(value: Any) -> np.ndarray:
  arr = np.asarray(value)
  if arr.dtype == object:  # Records (dicts) and ragged lists: JSON strings.
    arr = np.asarray([json.dumps(v, default=str) for v in value])
  return arr


def save_batch(path: str, batch: Mapping[str, Any]) -> str:
  """Saves a host batch (arrays, lists of strings or records) atomically."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  buf = io.BytesIO()
  np.savez(buf, **{k: _savable(v) for k, v in batch.items()})
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(buf.getvalue())
  os.replace(tmp, path)
  return path


class SkipGuard:
  """Counts skipped updates; saves their batches; stops a diverged run."""

  def __init__(self, stage: str, stage_dir: str, max_consecutive: int):
    if max_consecutive < 1:
      raise ValueError(
          f"{stage}: max_consecutive_skips must be >= 1, got "
          f"{max_consecutive}"
      )
    self.stage = stage
    self.stage_dir = stage_dir
    self.max_consecutive = max_consecutive
    self.consecutive = 0
    self.total = 0

  def update(
      self,
      step: int,
      metrics: Mapping[str, float],
      batch: Mapping[str, Any] | None = None,
  ) -> None:
    """Takes one step's host metrics (with `skipped`) and its host batch."""
    if not metrics["skipped"]:
      self.consecutive = 0
      return
    self.consecutive += 1
    self.total += 1
    where = "(batch not available)"
    if batch is not None:
      where = save_batch(bad_batch_path(self.stage_dir, step), batch)
    logging.warning(
        "%s: step %d had a non-finite loss or gradient (loss=%s, "
        "grad_norm=%s); update skipped, batch saved to %s",
        self.stage,
        step,
        metrics.get("loss"),
        metrics.get("grad_norm"),
        where,
    )
    if self.consecutive >= self.max_consecutive:
      first = step - self.consecutive + 1
      raise TooManySkippedUpdatesError(
          f"{self.stage}: {self.consecutive} consecutive updates had a "
          f"non-finite loss or gradient (steps {first}..{step}); stopping at "
          f"step {step}. The last offending batch is in {where}. Parameters "
          "are those of the last finite update; lower the learning rate or "
          "inspect the saved batches."
      )
