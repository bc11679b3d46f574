"""Numerics guard: a non-finite SFT step is skipped, counted, and stops a run.

The step-level test feeds a batch whose loss mask holds a NaN (so loss and
gradients are NaN) between two good batches and checks that the bad step is
an exact no-op on parameters and optimizer state. The loop-level test trains
from parameters containing a NaN, so every step is skipped: the run must stop
after `sft.max_consecutive_skips` with a message naming the steps, and leave
each offending batch in `<stage>/bad_batch_step<N>.npz`. A compile-level test
checks that the step's select between old and new optimizer state does not
make XLA:CPU copy the Adam moments (`compiler.COMPILER_OPTIONS`). The GRPO tests do
the same through `grpo.train_step` (NaN advantages) and `grpo.train`
(NaN parameters), where the saved batch is the step's rollout.
"""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import grpo_tiny
from configs import tiny
from rlcs_jax import compiler
from rlcs_jax import metrics as metrics_lib
from rlcs_jax import numerics
from rlcs_jax.data import pipeline
from rlcs_jax.trainers import grpo
from rlcs_jax.trainers import jobs
from rlcs_jax.trainers import setup
from rlcs_jax.trainers import sft
from rlcs_jax.trainers import state as state_lib


def _config(module=tiny, **overrides):
  c = module.get_config("test")
  c.unlock()
  for k, v in overrides.items():
    section, key = k.split(".")
    c[section][key] = v
  c.lock()
  return c


def _sft_step(grad_accum: int):
  """(model config, mesh, rules, tx, state shardings, jitted sharded SFT
  step) of the tiny config's test preset (vocab 128)."""
  config = _config()
  model_cfg = setup.model_config(config, None)
  mesh = setup.make_mesh(config)
  rules = setup.rules(config)
  tx = state_lib.make_optimizer(
      state_lib.OptimConfig.from_config(config.optim, 10)
  )
  params_sh = state_lib.param_shardings(model_cfg, mesh, rules)
  shardings = state_lib.state_shardings(
      params_sh, tx, state_lib.abstract_params(model_cfg), mesh
  )
  step = sft.jit_train_step(
      sft.make_train_step(model_cfg, tx, grad_accum), shardings, mesh
  )
  return model_cfg, mesh, rules, tx, shardings, step


def test_nonfinite_step_is_an_exact_no_op():
  model_cfg, mesh, rules, tx, shardings, step = _sft_step(grad_accum=2)
  rng = np.random.default_rng(0)

  def batch(nan=False):
    mask = np.ones((8, 16), np.float32)
    if nan:
      mask[3, 5] = np.nan
    return {
        "tokens": rng.integers(0, 128, (8, 16)).astype(np.int32),
        "valid": np.ones((8, 16), bool),
        "loss_mask": mask,
    }

  good1, bad, good2 = batch(), batch(nan=True), batch()
  params = state_lib.init_params(model_cfg, jax.random.key(0), mesh, rules)

  def run(batches):
    state = state_lib.create_state(params, tx, shardings)
    skipped = []
    with jax.set_mesh(mesh):
      for b in batches:
        state, m = step(state, b)
        skipped.append(metrics_lib.to_host(m)["skipped"])
    return jax.device_get(state), skipped

  before_bad, _ = run([good1])
  after_bad, skipped = run([good1, bad])
  assert skipped == [0.0, 1.0]
  assert int(after_bad.step) == 2  # The step is counted, not applied.
  jax.tree.map(
      np.testing.assert_array_equal,
      (after_bad.params, after_bad.opt_state),
      (before_bad.params, before_bad.opt_state),
  )
  # Training continues as if the bad batch had never been seen.
  with_skip, skipped = run([good1, bad, good2])
  without, _ = run([good1, good2])
  assert skipped == [0.0, 1.0, 0.0]
  jax.tree.map(np.testing.assert_array_equal, with_skip.params, without.params)
  assert np.all(
      [np.isfinite(x).all() for x in jax.tree.leaves(with_skip.params)]
  )


def _input_copies(monkeypatch, options) -> list[str]:
  """Float32 input arrays the compiled SFT step copies, compiled with
  `compiler.COMPILER_OPTIONS` set to `options`."""
  monkeypatch.setattr(compiler, "COMPILER_OPTIONS", options)
  model_cfg, mesh, _, tx, shardings, step = _sft_step(grad_accum=1)
  state = jax.eval_shape(
      lambda p: state_lib.create_state(p, tx, shardings),
      state_lib.abstract_params(model_cfg),
  )
  batch = {
      "tokens": jax.ShapeDtypeStruct((8, 16), jnp.int32),
      "valid": jax.ShapeDtypeStruct((8, 16), bool),
      "loss_mask": jax.ShapeDtypeStruct((8, 16), jnp.float32),
  }
  with jax.set_mesh(mesh):
    hlo = step.lower(state, batch).compile().as_text()
  # The partitioned program names its inputs param.N.
  entry = hlo[hlo.index("\nENTRY") :]
  return re.findall(r"= (f32\[[\d,]+\])\{[\d,]*\} copy\(%param[\w.]*\)", entry)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU only")
def test_skip_select_leaves_adam_moments_updated_in_place(monkeypatch):
  """The step selects between the old and new optimizer state, and XLA:CPU
  copied both Adam moments of every parameter for it unless compiled with
  `compiler.COMPILER_OPTIONS` (copy insertion with region analysis)."""
  assert not _input_copies(monkeypatch, compiler.COMPILER_OPTIONS)
  # Without the options the same step copies the moments (so the test can
  # fail).
  assert _input_copies(monkeypatch, {})


def test_consecutive_skips_stop_the_run_and_save_batches(tmp_path):
  config = _config(**{"sft.max_consecutive_skips": 2, "sft.eval_every": 0})
  root = str(tmp_path)
  files = setup.data_files(config, root)
  tok = setup.load_tokenizer(config, root, files)
  source = setup.datasets("sft", {"train": files["sft_train"]}, root)["train"]
  model_cfg = setup.model_config(config, tok)
  mesh = setup.make_mesh(config)
  params = state_lib.init_params(
      model_cfg, jax.random.key(0), mesh, setup.rules(config)
  )
  leaves, treedef = jax.tree.flatten(params)
  leaves[0] = leaves[0].at[0].set(np.nan)  # Every step's loss is NaN.
  params = jax.tree.unflatten(treedef, leaves)
  with pytest.raises(
      numerics.TooManySkippedUpdatesError,
      match=r"sft: 2 consecutive updates .* \(steps 1\.\.2\); stopping at "
      r"step 2.*bad_batch_step2\.npz",
  ):
    sft.train(
        config,
        root,
        stage="sft",
        model_cfg=model_cfg,
        tokenizer=tok,
        mesh=mesh,
        train_source=source,
        init_params=params,
    )
  rows = metrics_lib.read_metrics(root, "sft")
  assert [(r["step"], r["skipped"], r["loss"]) for r in rows] == [
      (1, 1.0, "nan"),
      (2, 1.0, "nan"),
  ]
  for n in (1, 2):
    with np.load(os.path.join(root, "sft", f"bad_batch_step{n}.npz")) as f:
      assert sorted(f.files) == ["loss_mask", "tokens", "valid"]
      assert f["tokens"].shape == (config.sft.batch_size, config.data.seq_len)
  assert not sft.stage_is_done(root, "sft")


def test_skip_guard_counts_only_consecutive_skips(tmp_path):
  guard = numerics.SkipGuard("grpo", str(tmp_path), max_consecutive=2)
  rollout = {
      "tokens": np.zeros((2, 3), np.int32),
      "completions": ["a", "b"],
      "records": [{"id": "x", "kwargs": [{}]}, {"id": "y"}],
  }
  guard.update(1, {"skipped": 1.0}, rollout)
  guard.update(2, {"skipped": 0.0})
  guard.update(3, {"skipped": 1.0})  # A finite step in between: no stop.
  with pytest.raises(numerics.TooManySkippedUpdatesError, match="steps 3..4"):
    guard.update(4, {"skipped": 1.0})
  assert guard.total == 3
  with np.load(tmp_path / "bad_batch_step1.npz") as f:
    assert list(f["completions"]) == ["a", "b"]
    assert '"id": "x"' in f["records"][0]  # Records saved as JSON text.


def test_check_finite_defers_to_the_skip_guard():
  metrics_lib.check_finite(5, {"loss": float("nan"), "skipped": 1.0})
  with pytest.raises(metrics_lib.NonFiniteLossError, match="at step 5"):
    metrics_lib.check_finite(5, {"loss": float("nan"), "skipped": 0.0})


def _grpo(root, params_fn=lambda p: p, **overrides):
  """A GRPO trainer on the tiny test config and its prompt source."""
  config = _config(grpo_tiny, **overrides)
  files = setup.data_files(config, root)
  tok = setup.load_tokenizer(config, root, files)
  split = config.grpo.prompt_split
  source = setup.datasets("contexts", {split: files[split]}, root)[split]
  model_cfg = setup.model_config(config, tok)
  mesh = setup.make_mesh(config)
  params = state_lib.init_params(
      model_cfg, jax.random.key(0), mesh, setup.rules(config)
  )
  trainer = grpo.GRPOTrainer(
      config,
      root,
      stage="grpo",
      model_cfg=model_cfg,
      tokenizer=tok,
      mesh=mesh,
      init_params=params_fn(params),
      reward_components=jobs.code_rewards(config.grpo),
  )
  return trainer, source


def _poison(params):
  leaves, treedef = jax.tree.flatten(params)
  leaves[0] = leaves[0].at[0].set(np.nan)  # Every loss is NaN.
  return jax.tree.unflatten(treedef, leaves)


def test_grpo_nonfinite_update_is_an_exact_no_op(tmp_path):
  trainer, source = _grpo(str(tmp_path))
  it = pipeline.records_iterator(
      source, "contexts", batch_size=4, seed=0, shuffle=False
  )
  with jax.set_mesh(trainer.mesh):
    roll = trainer.rollout(it, 0)
    before = jax.device_get(trainer.state)
    bad = np.full_like(roll.rewards, np.nan)
    metrics, _ = trainer.train_step(roll, advantages=bad)
    after = jax.device_get(trainer.state)
    assert metrics["skipped"] == trainer.cfg.num_iterations
    assert int(after.step) == int(before.step) + trainer.cfg.num_iterations
    jax.tree.map(
        np.testing.assert_array_equal,
        (after.params, after.opt_state),
        (before.params, before.opt_state),
    )
    good = np.tile([1.0, -1.0], (roll.rewards.shape[0], 1))
    metrics, _ = trainer.train_step(roll, advantages=good)
  assert metrics["skipped"] == 0.0
  assert np.isfinite(metrics["loss"])
  changed = jax.device_get(trainer.state.params)
  assert any(
      not np.array_equal(a, b)
      for a, b in zip(jax.tree.leaves(changed), jax.tree.leaves(after.params))
  )


def test_grpo_consecutive_skips_stop_the_run_and_save_rollouts(tmp_path):
  root = str(tmp_path)
  trainer, source = _grpo(
      root, _poison, **{"grpo.max_consecutive_skips": 2, "grpo.steps": 3}
  )
  with pytest.raises(
      numerics.TooManySkippedUpdatesError,
      match=r"grpo: 2 consecutive updates .* \(steps 1\.\.2\); stopping at "
      r"step 2.*bad_batch_step2\.npz",
  ):
    grpo.train(trainer, source, prompt_kind="contexts")
  rows = metrics_lib.read_metrics(root, "grpo")
  g = trainer.cfg
  assert [(r["step"], r["skipped"], r["loss"]) for r in rows] == [
      (1, float(g.num_iterations), "nan"),
      (2, float(g.num_iterations), "nan"),
  ]
  rows_b = g.num_prompts * g.num_generations
  for n in (1, 2):
    with np.load(os.path.join(root, "grpo", f"bad_batch_step{n}.npz")) as f:
      assert {"tokens", "mask", "rewards", "completions", "records"} <= set(
          f.files
      )
      assert f["tokens"].shape[0] == rows_b
      assert f["rewards"].shape == (g.num_prompts, g.num_generations)
      assert len(f["completions"]) == len(f["records"]) == rows_b
      assert '"prompt"' in f["records"][0]
  assert not sft.stage_is_done(root, "grpo")
