"""`kill -9` mid-run: the rerun resumes from the latest *complete* checkpoint.

Nothing runs on SIGKILL, so at most the steps since the last periodic
checkpoint are lost. Before rerunning, a half-written newer step (a step
directory without orbax's commit file) and an unfinished orbax temporary
directory are planted: the rerun must ignore both and resume from the
newest complete step.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

from rlcs_jax import metrics as metrics_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
EVERY = 4
STEPS = 60
ARGS = (
    "--config=configs/tiny.py:test",
    f"--config.sft.steps={STEPS}",
    "--config.sft.eval_every=0",
    "--config.sft.num_samples=0",
    f"--config.ckpt.every_steps={EVERY}",
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


def _tail(log, n=3000):
  with open(log) as f:
    return f.read()[-n:]


def test_kill9_resumes_from_latest_complete_checkpoint(tmp_path):
  workdir = str(tmp_path / "w")
  log1, log2 = str(tmp_path / "1.log"), str(tmp_path / "2.log")
  proc = _start(workdir, log1)
  deadline = time.monotonic() + 300
  while len(_steps(workdir)) < 2 * EVERY + 1:
    if proc.poll() is not None or time.monotonic() > deadline:
      proc.kill()
      raise AssertionError(_tail(log1))
    time.sleep(0.05)
  logged = max(_steps(workdir))
  proc.send_signal(signal.SIGKILL)
  assert proc.wait(timeout=60) == -signal.SIGKILL

  ckpt_dir = os.path.join(workdir, "sft", "checkpoints")
  complete = [
      int(n)
      for n in os.listdir(ckpt_dir)
      if n.isdigit()
      and os.path.exists(os.path.join(ckpt_dir, n, "commit_success.txt"))
  ]
  latest = max(complete)
  # A step's metrics are logged after its checkpoint was saved (one step
  # late), so every periodic checkpoint up to `logged` is complete.
  assert latest % EVERY == 0 and latest >= logged // EVERY * EVERY
  assert latest < STEPS, "the run finished before it was killed"

  half = os.path.join(ckpt_dir, str(latest + EVERY))
  shutil.copytree(os.path.join(ckpt_dir, str(latest)), half)
  os.remove(os.path.join(half, "commit_success.txt"))
  shutil.rmtree(os.path.join(half, "state"))
  tmp = os.path.join(ckpt_dir, f"{latest + 2 * EVERY}.orbax-checkpoint-tmp-9")
  os.makedirs(os.path.join(tmp, "state"))

  proc = _start(workdir, log2)  # The same command again.
  assert proc.wait(timeout=300) == 0, _tail(log2)
  err = _tail(log2, 200_000)
  assert f"sft: resuming from step {latest}" in err, err[-3000:]
  assert re.search(r"has no commit_success\.txt \(half-written\)", err)
  assert os.path.isdir(half + ".incomplete") and not os.path.exists(tmp)
  # Steps after `latest` logged before the kill are logged again; readers
  # see each step once, from the resumed run.
  assert _steps(workdir) == list(range(1, STEPS + 1))
  assert os.path.exists(os.path.join(workdir, "sft", "final_params"))
