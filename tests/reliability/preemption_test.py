"""SIGTERM to a real `python -m rlcs_jax.main` run: checkpoint, exit 0, resume.

The run is long enough (100 steps) that the signal lands mid-training. The
process must stop at a step boundary, save a checkpoint of exactly the step
it logged last, exit with code 0, and rerunning the same command must resume
there and finish, with every step logged exactly once.
"""

import os
import re
import signal
import subprocess
import sys
import time

from rlcs_jax import metrics as metrics_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
ARGS = (
    "--config=configs/tiny.py:test",
    "--config.sft.steps=100",
    "--config.sft.eval_every=0",
    "--config.sft.num_samples=0",
    "--config.ckpt.every_steps=1000",  # Only the preemption save, then final.
)


def _start(workdir, log):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
  with open(log, "w") as f:  # A file, not a pipe: a full pipe blocks main.
    return subprocess.Popen(
        [sys.executable, "-m", "rlcs_jax.main", *ARGS, "--workdir", workdir],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=f,
    )


def _steps(workdir):
  return [r["step"] for r in metrics_lib.read_metrics(workdir, "sft")]


def _wait_for_steps(proc, workdir, n, log, timeout=300):
  deadline = time.monotonic() + timeout
  while len(_steps(workdir)) < n:
    if proc.poll() is not None or time.monotonic() > deadline:
      proc.kill()
      raise AssertionError(f"no {n} steps logged:\n{_tail(log)}")
    time.sleep(0.05)


def _tail(log, n=3000):
  with open(log) as f:
    return f.read()[-n:]


def test_sigterm_checkpoints_exits_zero_and_resumes(tmp_path):
  workdir = str(tmp_path / "w")
  log1, log2 = str(tmp_path / "1.log"), str(tmp_path / "2.log")
  proc = _start(workdir, log1)
  _wait_for_steps(proc, workdir, 3, log1)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=120) == 0, _tail(log1)
  stopped = re.search(
      r"sft: stopped at step (\d+) after saving a checkpoint",
      _tail(log1, 100_000),
  )
  assert stopped, _tail(log1)
  step = int(stopped.group(1))
  assert 3 <= step < 100
  ckpt_dir = os.path.join(workdir, "sft", "checkpoints")
  assert os.listdir(ckpt_dir) == [str(step)]
  assert os.path.exists(os.path.join(ckpt_dir, str(step), "commit_success.txt"))
  assert _steps(workdir) == list(range(1, step + 1))  # Pending step flushed.
  assert not os.path.exists(os.path.join(workdir, "sft", "final_params"))

  proc = _start(workdir, log2)  # The same command again.
  assert proc.wait(timeout=300) == 0, _tail(log2)
  assert f"sft: resuming from step {step}" in _tail(log2, 100_000)
  assert _steps(workdir) == list(range(1, 101))
  assert os.path.exists(os.path.join(workdir, "sft", "final_params"))
