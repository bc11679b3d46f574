"""Graceful stops: SIGTERM/SIGINT ask the trainer to checkpoint and exit.

The signal handler only sets a flag; the training loop checks it at each step
boundary, saves a checkpoint of the finished step and raises `Preempted`, so
a rerun of the same command resumes exactly there. Tests use `stop_at_step`
to interrupt deterministically.

With several processes the signal may reach only some of them (or land
between two processes' checks), yet checkpointing is collective: every
process must stop at the same step boundary. `should_stop` therefore ORs
the local flags of all processes (one tiny allgather per step), so all of
them agree on the step at which to stop.
"""

from __future__ import annotations

import signal
import threading

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np


class Preempted(Exception):
  """Training stopped at a step boundary after saving a checkpoint."""

  def __init__(self, stage: str, step: int):
    super().__init__(
        f"{stage}: stopped at step {step} after saving a "
        "checkpoint; rerun the same command to resume"
    )
    self.stage = stage
    self.step = step


class StopRequest:
  """A flag set by signals (or a step limit) and polled by training loops."""

  def __init__(self, stop_at_step: int | None = None):
    self.stop_at_step = stop_at_step
    self._event = threading.Event()
    self._previous = {}

  def request(self, *_):
    if not self._event.is_set():
      logging.warning(
          "stop requested: will checkpoint at the next step "
          "boundary and exit"
      )
    self._event.set()

  def should_stop(self, step: int) -> bool:
    """Whether to stop after `step`; the same answer on every process.

    Must be called at the same step boundaries by all processes (it is a
    collective when there are several).
    """
    local = self._event.is_set() or (
        self.stop_at_step is not None and step >= self.stop_at_step
    )
    if jax.process_count() > 1:
      flags = multihost_utils.process_allgather(np.int32(local))
      if np.any(flags) and not local:
        logging.warning(
            "stop requested by process(es) %s: stopping at step %d too",
            np.flatnonzero(flags).tolist(),
            step,
        )
      local = bool(np.any(flags))
    return local

  def install(self) -> "StopRequest":
    """Routes SIGTERM and SIGINT to `request` (main thread only)."""
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self.request)
    return self

  def uninstall(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()
