"""SFT trainer: learns, checkpoints, and resumes with identical data order."""

import os

import jax
import numpy as np
import pytest

from configs import tiny
from rlcs_jax import metrics as metrics_lib
from rlcs_jax import preemption
from rlcs_jax.trainers import setup
from rlcs_jax.trainers import sft


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
  """Data and tokenizer prepared once; each run gets its own stage dir."""
  root = str(tmp_path_factory.mktemp("sft"))
  config = tiny.get_config("test")
  files = setup.data_files(config, root)
  tok = setup.load_tokenizer(config, root, files)
  sources = setup.datasets(
      "sft", {"train": files["sft_train"], "eval": files["sft_eval"]}, root
  )
  return config, root, tok, sources


def _train(shared, workdir, stop=None):
  config, _, tok, sources = shared
  mesh = setup.make_mesh(config)
  return sft.train(
      config,
      workdir,
      stage="sft",
      model_cfg=setup.model_config(config, tok),
      tokenizer=tok,
      mesh=mesh,
      train_source=sources["train"],
      eval_source=sources["eval"],
      stop=stop,
  )


def _losses(workdir):
  return [
      (r["step"], r["loss"])
      for r in metrics_lib.read_metrics(workdir)
      if "loss" in r
  ]


def test_resume_after_stop_matches_uninterrupted(shared, tmp_path):
  full = _train(shared, str(tmp_path / "full"))
  interrupted = str(tmp_path / "interrupted")
  with pytest.raises(preemption.Preempted, match="step 2"):
    _train(shared, interrupted, stop=preemption.StopRequest(stop_at_step=2))
  assert sft.stage_is_done(interrupted, "sft") is False
  resumed = _train(shared, interrupted)
  want = _losses(str(tmp_path / "full"))
  got = _losses(interrupted)
  assert [s for s, _ in got] == [s for s, _ in want] == list(range(1, 7))
  np.testing.assert_allclose(
      [l for _, l in got], [l for _, l in want], rtol=1e-6
  )
  jax.tree.map(
      np.testing.assert_array_equal,
      jax.device_get(resumed),
      jax.device_get(full),
  )
  assert sft.stage_is_done(interrupted, "sft")


def test_loss_decreases_and_writes_outputs(shared, tmp_path):
  workdir = str(tmp_path / "run")
  _train(shared, workdir)
  rows = metrics_lib.read_metrics(workdir, "sft")
  losses = [r["loss"] for r in rows if "loss" in r]
  assert losses[-1] < losses[0]
  assert any("eval_loss" in r for r in rows)
  assert os.listdir(os.path.join(workdir, "tb", "sft"))
  assert sorted(os.listdir(os.path.join(workdir, "sft", "checkpoints"))) == [
      "3",
      "6",
  ]


def test_nonfinite_loss_stops_with_step():
  with pytest.raises(metrics_lib.NonFiniteLossError, match="at step 7"):
    metrics_lib.check_finite(7, {"loss": float("nan")})
