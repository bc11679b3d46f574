"""Metric writing (TensorBoard + metrics.jsonl), aggregation and NaN guard.

Only process 0 writes. `metrics.jsonl` holds one JSON object per logged step
(`{"step": ..., "stage": ..., name: value, ...}`); TensorBoard event files are
written with tensorboardX (no TensorFlow needed). Device metrics are pulled to
host one step late by the trainers so dispatch stays asynchronous.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

import jax
import numpy as np


class NonFiniteLossError(FloatingPointError):
  """Raised when training produced a NaN/inf loss."""


def to_host(metrics: Mapping[str, Any]) -> dict[str, float]:
  """Device scalars (or (sum, count) pairs) -> python floats."""
  out = {}
  for k, v in jax.device_get(dict(metrics)).items():
    if isinstance(v, (tuple, list)) and len(v) == 2:
      s, c = (float(np.asarray(x)) for x in v)
      out[k] = s / c if c else float("nan")
    else:
      out[k] = float(np.asarray(v))
  return out


def check_finite(
    step: int, metrics: Mapping[str, float], keys: tuple[str, ...] = ("loss",)
) -> None:
  """Raises on a non-finite loss that was *applied*.

  A step whose metrics say `skipped` (the trainer kept the old parameters,
  see `numerics.py`) is exempt: skipping and counting is the guard for it.
  """
  if metrics.get("skipped"):
    return
  for k in keys:
    if k in metrics and not math.isfinite(metrics[k]):
      raise NonFiniteLossError(
          f"non-finite {k}={metrics[k]} at step {step}; lower the learning "
          "rate or check the data of this step"
      )


class MetricWriter:
  """Writes scalars to TensorBoard and metrics.jsonl (process 0 only)."""

  def __init__(
      self, workdir: str, *, stage: str = "train", enabled: bool | None = None
  ):
    self.enabled = (jax.process_index() == 0) if enabled is None else enabled
    self.stage = stage
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      from tensorboardX import SummaryWriter  # Heavy import; writer only.

      self._tb = SummaryWriter(os.path.join(workdir, "tb", stage))

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), "stage": self.stage}
    for k, v in scalars.items():
      v = float(v)
      record[k] = v if math.isfinite(v) else str(v)
      self._tb.add_scalar(f"{self.stage}/{k}", v, step)
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps(record) + "\n")

  def write_text(self, step: int, name: str, text: str) -> None:
    if self.enabled:
      self._tb.add_text(f"{self.stage}/{name}", text, step)

  def flush(self):
    if self._tb is not None:
      self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str, stage: str | None = None) -> list[dict]:
  """Reads metrics.jsonl back (for reports, plots and tests).

  A row logged twice (same stage, step and names: a run killed after logging
  steps past its last checkpoint, then resumed from that checkpoint) keeps
  only its last occurrence, which the resumed run wrote.
  """
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  rows = [r for r in rows if stage is None or r.get("stage") == stage]
  key = lambda r: (r.get("stage"), r.get("step"), tuple(sorted(r)))
  last = {key(r): i for i, r in enumerate(rows)}
  return [r for i, r in enumerate(rows) if last[key(r)] == i]
