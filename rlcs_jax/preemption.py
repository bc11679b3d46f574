"""Graceful stops: SIGTERM/SIGINT ask the trainer to checkpoint and exit.

The signal handler only sets a flag; the training loop checks it at each step
boundary, saves a checkpoint of the finished step and raises `Preempted`, so
a rerun of the same command resumes exactly there. Tests use `stop_at_step`
to interrupt deterministically.
"""

from __future__ import annotations

import signal
import threading

from absl import logging


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
    return self._event.is_set() or (
        self.stop_at_step is not None and step >= self.stop_at_step
    )

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
