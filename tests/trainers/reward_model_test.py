"""Scalar RM trainer: BT start point, resume equivalence, saved params."""

import math

import jax
import numpy as np
import pytest

from configs import tiny
from rlcs_jax import metrics as metrics_lib
from rlcs_jax import preemption
from rlcs_jax.data import jsonl
from rlcs_jax.trainers import reward_model
from rlcs_jax.trainers import setup
from rlcs_jax.trainers import sft
from rlcs_jax.trainers import state as state_lib


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("rm"))
  config = tiny.get_config("test")
  config.scalar_rm.steps = 4
  config.scalar_rm.batch_size = 8
  config.scalar_rm.grad_accum = 2
  config.scalar_rm.eval_pairs = 16
  config.scalar_rm.lr = 3e-3
  config.ckpt.every_steps = 100  # Only the final and preemption saves.
  files = setup.data_files(config, root)
  tok = setup.load_tokenizer(config, root, files)
  sources = setup.datasets(
      "pairs",
      {"train": files["pairs_train"], "eval": files["pairs_eval"]},
      root,
  )
  # Host-side random backbone (norm scales 1): cheaper than a jitted init.
  rng = np.random.default_rng(1)
  backbone = jax.tree.map(
      lambda a: np.ones(a.shape, a.dtype)
      if a.ndim == 1
      else rng.normal(0.0, 0.05, a.shape).astype(a.dtype),
      state_lib.abstract_params(setup.model_config(config, tok)),
  )
  return config, tok, sources, files, backbone


def _train(shared, workdir, stop=None, evaluate=False):
  config, tok, sources, _, backbone = shared
  return reward_model.train_scalar_rm(
      config,
      workdir,
      model_cfg=setup.model_config(config, tok),
      tokenizer=tok,
      mesh=setup.make_mesh(config),
      pairs_source=sources["train"],
      init_backbone=backbone,
      eval_source=sources["eval"] if evaluate else None,
      stop=stop,
  )


def test_trains_resumes_and_saves(shared, tmp_path):
  config, tok, _, files, _ = shared
  full_dir = str(tmp_path / "full")
  full = _train(shared, full_dir, evaluate=True)
  rows = metrics_lib.read_metrics(full_dir, "scalar_rm")
  train_rows = [r for r in rows if "loss" in r]
  assert [r["step"] for r in train_rows] == [1, 2, 3, 4]
  # The zero head scores every story 0: loss ln 2, accuracy 0.5 at step 1.
  assert train_rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
  assert train_rows[0]["accuracy"] == 0.5
  assert train_rows[-1]["margin"] != 0.0
  (eval_row,) = [r for r in rows if "eval_accuracy" in r]
  assert 0.0 <= eval_row["eval_accuracy"] <= 1.0
  assert np.isfinite(eval_row["eval_loss"])

  part = str(tmp_path / "part")
  with pytest.raises(preemption.Preempted, match="step 2"):
    _train(shared, part, stop=preemption.StopRequest(stop_at_step=2))
  assert not sft.stage_is_done(part, "scalar_rm")
  resumed = _train(shared, part)
  got = [r["loss"] for r in metrics_lib.read_metrics(part) if "loss" in r]
  np.testing.assert_allclose(got, [r["loss"] for r in train_rows], rtol=1e-6)
  jax.tree.map(
      np.testing.assert_array_equal,
      jax.device_get(resumed),
      jax.device_get(full),
  )

  # Saved final parameters load back; the scorer uses them.
  model_cfg = setup.model_config(config, tok)
  mesh = setup.make_mesh(config)
  loaded = reward_model.load_params(
      full_dir, "scalar_rm", model_cfg, mesh, setup.rules(config)
  )
  jax.tree.map(
      np.testing.assert_array_equal,
      jax.device_get(loaded),
      jax.device_get(full),
  )
  pairs = jsonl.read_jsonl(files["pairs_eval"], "pairs")[:3]
  scorer = reward_model.make_scorer(
      loaded, model_cfg, tok, batch_size=4, seq_len=config.scalar_rm.seq_len
  )
  scores = scorer(
      [p["prompt"] for p in pairs], [p["response_1"] for p in pairs]
  )
  assert scores.shape == (3,) and np.isfinite(scores).all()
  assert len(set(scores.tolist())) == 3
