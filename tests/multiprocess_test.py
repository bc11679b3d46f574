"""Two local CPU processes train together on one global mesh.

Each process is `python -m rlcs_jax.main --distributed` with 2 virtual CPU
devices and `JAX_COORDINATOR_ADDRESS` / `JAX_NUM_PROCESSES` /
`JAX_PROCESS_ID` (cross-process collectives use gloo, JAX 0.10's CPU
default), so the mesh has 4 devices over 2 processes: each process reads
its own slice of the data, only process 0 writes logs, and the checkpoints
written together restore in this single test process on one device. A
SIGTERM sent to one process stops both at the same step boundary.
"""

import glob
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import grpo_tiny
from configs import tiny
from rlcs_jax import checkpoint as ckpt_lib
from rlcs_jax import metrics as metrics_lib
from rlcs_jax import sharding as shd
from rlcs_jax.trainers import setup
from rlcs_jax.trainers import sft
from rlcs_jax.trainers import state as state_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(tmp_path, workdir, *args):
  """Starts main as 2 processes; returns them and their log files."""
  port = _free_port()
  procs, logs = [], []
  for i in range(2):
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
        JAX_NUM_PROCESSES="2",
        JAX_PROCESS_ID=str(i),
    )
    logs.append(str(tmp_path / f"process{i}.log"))
    with open(logs[-1], "w") as log:
      procs.append(
          subprocess.Popen(
              [
                  sys.executable,
                  "-m",
                  "rlcs_jax.main",
                  "--distributed",
                  f"--workdir={workdir}",
                  *args,
              ],
              cwd=REPO,
              env=env,
              stdout=log,
              stderr=subprocess.STDOUT,
          )
      )
  return procs, logs


def _finish(procs, logs, timeout):
  """Waits for both processes; returns their logs (fails on a non-zero exit)."""
  deadline = time.monotonic() + timeout
  try:
    for p in procs:
      p.wait(timeout=max(1.0, deadline - time.monotonic()))
  except subprocess.TimeoutExpired:
    pass
  finally:
    for p in procs:  # A process left waiting in a collective.
      if p.poll() is None:
        p.kill()
        p.wait()
  texts = []
  for path in logs:
    with open(path, errors="replace") as f:
      texts.append(f.read())
  for i, p in enumerate(procs):
    assert p.returncode == 0, f"process {i}: {texts[i][-4000:]}"
  for i, text in enumerate(texts):
    assert f"process {i}/2" in text and "over 4 devices" in text
  return texts


def _launch(tmp_path, workdir, *args, timeout=480):
  """Runs main as 2 processes; returns their logs (fails on a non-zero exit)."""
  return _finish(*_start(tmp_path, workdir, *args), timeout)


def _single_device_restore(workdir, config, stage):
  """Final params and the last checkpoint of `stage`, on a 1-device mesh."""
  tok = setup.load_tokenizer(config, workdir, {})
  model_cfg = setup.model_config(config, tok)
  mesh = shd.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
  rules = setup.rules(config)
  params = jax.device_get(
      sft.load_stage_params(workdir, stage, model_cfg, mesh, rules)
  )
  tx = state_lib.make_optimizer(
      state_lib.OptimConfig.from_config(config.optim, 1)
  )
  shardings = state_lib.state_shardings(
      state_lib.param_shardings(model_cfg, mesh, rules),
      tx,
      state_lib.abstract_params(model_cfg),
      mesh,
  )
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, stage, "checkpoints"))
  state, _, step = ckpt.restore(
      state_lib.abstract_state(shardings, model_cfg, tx),
      ckpt_lib.model_meta(model_cfg),
  )
  ckpt.close()
  return params, jax.device_get(state), step


def _only_process_0_wrote(workdir, stage, steps):
  rows = metrics_lib.read_metrics(workdir, stage)
  assert [r["step"] for r in rows if "loss" in r] == list(range(1, steps + 1))
  # tensorboardX names event files by host and pid: one writer, one file.
  assert len(glob.glob(os.path.join(workdir, "tb", stage, "events.*"))) == 1
  return rows


def test_two_process_sft_logs_once_and_restores_in_one_process(tmp_path):
  workdir = str(tmp_path / "w")
  _launch(
      tmp_path,
      workdir,
      "--config=configs/tiny.py:test",
      "--config.sft.steps=4",
      "--config.sft.eval_every=2",
      "--config.ckpt.every_steps=2",
      "--config.sft.num_samples=1",
  )
  rows = _only_process_0_wrote(workdir, "sft", 4)
  assert [r["step"] for r in rows if "eval_loss" in r] == [2, 4]
  assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
  assert os.path.exists(os.path.join(workdir, "sft", "samples_4.txt"))
  params, state, step = _single_device_restore(
      workdir, tiny.get_config("test"), "sft"
  )
  assert step == 4 and int(state.step) == 4
  jax.tree.map(np.testing.assert_array_equal, state.params, params)


def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path):
  # Checkpointing is collective: if only the signalled process stopped, the
  # other would train on and both would hang (or fail) in mismatched
  # collectives. `StopRequest.should_stop` makes them agree.
  workdir = str(tmp_path / "w")
  procs, logs = _start(
      tmp_path,
      workdir,
      "--config=configs/tiny.py:test",
      "--config.sft.steps=100",
      "--config.sft.eval_every=0",
      "--config.sft.num_samples=0",
      "--config.ckpt.every_steps=1000",  # Only the preemption checkpoint.
  )
  deadline = time.monotonic() + 300
  while len(metrics_lib.read_metrics(workdir, "sft")) < 2:
    if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
      _finish(procs, logs, timeout=1)
      raise AssertionError("no steps logged")
    time.sleep(0.05)
  procs[1].send_signal(signal.SIGTERM)  # Process 0 is not signalled.
  texts = _finish(procs, logs, timeout=180)
  steps = [
      re.findall(r"sft: stopped at step (\d+) after saving a checkpoint", t)
      for t in texts
  ]
  assert len(steps[0]) == len(steps[1]) == 1, steps
  step = int(steps[0][0])
  assert int(steps[1][0]) == step and 2 <= step < 100
  assert "stop requested by process(es) [1]" in texts[0]
  ckpt_dir = os.path.join(workdir, "sft", "checkpoints")
  assert os.listdir(ckpt_dir) == [str(step)]
  rows = metrics_lib.read_metrics(workdir, "sft")
  assert [r["step"] for r in rows] == list(range(1, step + 1))
  assert not os.path.exists(os.path.join(workdir, "sft", "final_params"))


@pytest.mark.slow  # ~3 min.
def test_two_process_grpo_trains_and_restores_in_one_process(tmp_path):
  workdir = str(tmp_path / "w")
  _launch(
      tmp_path,
      workdir,
      "--config=configs/grpo_tiny.py:test",
      "--config.sft.steps=2",
      "--config.sft.eval_every=0",
      "--config.sft.num_samples=0",
      "--config.grpo.steps=2",
      timeout=420,
  )
  rows = _only_process_0_wrote(workdir, "grpo", 2)
  # Each step's rollout holds both processes' prompts (2 each), sampled and
  # scored as one global batch.
  assert [r["prompts_drawn"] for r in rows if "loss" in r] == [4.0, 4.0]
  assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
  assert os.path.exists(os.path.join(workdir, "grpo", "results.json"))
  params, state, step = _single_device_restore(
      workdir, grpo_tiny.get_config("test"), "grpo"
  )
  assert step == 2
  jax.tree.map(np.testing.assert_array_equal, state.params, params)
