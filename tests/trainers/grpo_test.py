"""GRPO trainer: multi-iteration ratios, sharding, resume, dynamic sampling."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import grpo_tiny
from rlcs_jax import metrics as metrics_lib
from rlcs_jax import preemption
from rlcs_jax.trainers import grpo
from rlcs_jax.trainers import jobs
from rlcs_jax.trainers import rewards as rewards_lib
from rlcs_jax.trainers import setup
from rlcs_jax.trainers import state as state_lib


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("grpo"))
  config = grpo_tiny.get_config("test")
  r = jobs.prepare(config, root)
  source = setup.datasets(
      "contexts", {"train": r.files["contexts_train"]}, root
  )["train"]
  params = state_lib.init_params(
      r.model_cfg, jax.random.key(0), r.mesh, r.rules
  )
  return r, source, params


def _with(config, **overrides):
  c = config.copy_and_resolve_references()
  c.unlock()
  for k, v in overrides.items():
    node = c
    *path, last = k.split(".")
    for p in path:
      node = node[p]
    node[last] = v
  c.lock()
  return c


def _trainer(run_, workdir, config=None, components=None, mesh=None):
  r, _, params = run_
  config = config or r.config
  components = components or jobs.code_rewards(config.grpo)
  return grpo.GRPOTrainer(
      config,
      workdir,
      stage="grpo",
      model_cfg=r.model_cfg,
      tokenizer=r.tokenizer,
      mesh=mesh or r.mesh,
      init_params=params,
      reward_components=components,
  )


def test_second_iteration_sees_ratio_off_one(run, tmp_path):
  _, source, _ = run
  trainer = _trainer(run, str(tmp_path))
  it = grpo.pipeline.records_iterator(source, "contexts", batch_size=4, seed=0)
  with jax.set_mesh(trainer.mesh):
    roll = trainer.rollout(it, 0)
    rewards = np.array([[0.0, 1.0]] * 4, np.float32)  # Non-zero advantages.
    roll.rewards = rewards
    metrics, _ = trainer.train_step(roll)
  assert metrics["ratio_mean_first_iter"] == pytest.approx(1.0, abs=1e-5)
  assert abs(metrics["ratio_mean"] - 1.0) > 1e-4
  assert metrics["skipped"] == 0


def test_rollout_shapes_and_masks(run, tmp_path):
  _, source, _ = run
  trainer = _trainer(run, str(tmp_path))
  it = grpo.pipeline.records_iterator(source, "contexts", batch_size=4, seed=0)
  roll = trainer.rollout(it, 0)
  b, t = 8, trainer.sampling_cfg.max_new_tokens
  assert roll.tokens.shape == (b, roll.prompt_len + t)
  assert roll.mask.shape == (b, t) and roll.rewards.shape == (4, 2)
  np.testing.assert_array_equal(roll.mask.sum(1), roll.lengths)
  # Each group shares its prompt.
  assert roll.prompts[0] == roll.prompts[1] != roll.prompts[2]


def test_dynamic_sampling_drops_constant_groups(run, tmp_path):
  r, source, _ = run
  config = _with(
      r.config, **{"grpo.dynamic_sampling": True, "grpo.max_draws": 3}
  )
  calls = []

  def half_constant(batch):
    calls.append(len(batch.completions))
    # Groups alternate: constant reward, then varied reward.
    g = np.arange(len(batch.completions)) // batch.group_size
    j = np.arange(len(batch.completions)) % batch.group_size
    return np.where(g % 2 == 0, 0.5, j.astype(float))

  trainer = _trainer(
      run,
      str(tmp_path),
      config,
      [rewards_lib.RewardComponent("x", half_constant, 1.0)],
  )
  it = grpo.pipeline.records_iterator(source, "contexts", batch_size=4, seed=0)
  roll = trainer.rollout(it, 0)
  assert len(calls) == 2  # One redraw needed to fill 4 varied groups.
  assert roll.kept_groups == 4 and roll.drawn_groups == 8
  assert np.all(np.std(roll.rewards, axis=1) > 0)


def test_overlong_mask_and_penalty(run, tmp_path):
  r, source, _ = run
  for mode in ("mask", "penalty"):
    config = _with(r.config, **{"grpo.overlong": mode})
    trainer = _trainer(run, str(tmp_path / mode), config)
    it = grpo.pipeline.records_iterator(
        source, "contexts", batch_size=4, seed=0
    )
    roll = trainer.rollout(it, 0)
    trunc = roll.truncated.reshape(4, 2)
    assert trunc.any()  # 12 new tokens: the random model rarely stops.
    if mode == "mask":
      assert np.isnan(roll.rewards[trunc]).all()
      assert (roll.mask[roll.truncated] == 0).all()
    else:
      assert (roll.rewards[trunc] == -1.0).all()


def test_sharded_update_equals_unsharded(run, tmp_path):
  r, source, _ = run
  # With the shared prompt pass, whose prompt rows are a strided slice of
  # the batch-sharded rows. The unsharded run takes its 8 rows in two
  # micro-batches (the update's scan), the sharded one in one (no scan):
  # equal results check the micro-batch accumulation too.
  assert r.config.grpo.micro_batch == 4
  results = []
  for sizes, micro in (
      ({"data": 1, "fsdp": 1, "tensor": 1}, 4),
      ({"data": 2, "fsdp": 2, "tensor": 2}, 0),
  ):
    config = _with(
        r.config,
        **{"grpo.share_prompt_pass": True, "grpo.micro_batch": micro},
    )
    n = int(np.prod(list(sizes.values())))
    mesh = grpo.shd.make_mesh(sizes, jax.devices()[:n])
    trainer = _trainer(run, str(tmp_path / str(n)), config, mesh=mesh)
    it = grpo.pipeline.records_iterator(
        source, "contexts", batch_size=4, seed=0
    )
    with jax.set_mesh(mesh):
      roll = trainer.rollout(it, 0)
      roll.rewards = np.array([[0.0, 1.0], [1.0, 0.0]] * 2, np.float32)
      m, _ = trainer.train_step(roll)
    results.append((m, jax.device_get(trainer.state.params)))
  (m1, p1), (m8, p8) = results
  for k in ("loss", "grad_norm", "kl", "ratio_mean"):
    assert m8[k] == pytest.approx(m1[k], rel=1e-4, abs=1e-6), k
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5), p8, p1)


# Slow: tests/reliability/resume_test.py checks the stronger property (an
# interrupted run's metrics and final parameters equal an uninterrupted one).
@pytest.mark.slow
def test_resume_gives_same_next_step(run, tmp_path):
  _, source, _ = run
  full = str(tmp_path / "full")
  grpo.train(_trainer(run, full), source, prompt_kind="contexts")
  part = str(tmp_path / "part")
  with pytest.raises(preemption.Preempted):
    grpo.train(
        _trainer(run, part),
        source,
        prompt_kind="contexts",
        stop=preemption.StopRequest(stop_at_step=2),
    )
  grpo.train(_trainer(run, part), source, prompt_kind="contexts")
  want = {m["step"]: m for m in metrics_lib.read_metrics(full, "grpo")}
  got = {m["step"]: m for m in metrics_lib.read_metrics(part, "grpo")}
  assert sorted(got) == sorted(want) == [1, 2, 3]
  for k in ("loss", "reward_mean", "response_length", "kl"):
    assert got[3][k] == pytest.approx(want[3][k], rel=1e-5, abs=1e-7), k


def test_reward_api_weights_and_nan():
  batch = rewards_lib.RewardBatch(
      prompts=["p"] * 3,
      completions=["one two", "a b c d", ""],
      completion_ids=[[], [], []],
      truncated=np.zeros(3, bool),
      records=[{"required_word": "two"}, {"required_word": ""}, {}],
      group_size=3,
  )
  comps = [
      rewards_lib.RewardComponent("len", rewards_lib.target_length(4), 2.0),
      rewards_lib.RewardComponent("word", rewards_lib.required_word(), 1.0),
  ]
  total, parts = rewards_lib.evaluate(comps, batch)
  np.testing.assert_allclose(parts["len"], [0.5, 1.0, 0.0])
  assert parts["word"][0] == 1.0 and np.isnan(parts["word"][1:]).all()
  np.testing.assert_allclose(total, [2.0, 2.0, 0.0])
  stats = rewards_lib.component_stats(parts)
  assert stats["reward/word_mean"] == 1.0
  all_nan = [
      rewards_lib.RewardComponent("n", lambda b: np.full(3, np.nan), 1.0)
  ]
  assert np.isnan(rewards_lib.evaluate(all_nan, batch)[0]).all()


def test_prompt_shared_pass_equals_per_row_pass(run, tmp_path):
  r, source, params = run
  assert not r.config.grpo.share_prompt_pass  # Off at test sizes.
  config = _with(r.config, **{"grpo.share_prompt_pass": True})
  trainer = _trainer(run, str(tmp_path), config)
  it = grpo.pipeline.records_iterator(source, "contexts", batch_size=4, seed=0)
  with jax.set_mesh(trainer.mesh):
    roll = trainer.rollout(it, 0)
  g = trainer.cfg.num_generations
  assert g > 1 and trainer._prompt_group_size(roll) == g
  assert _trainer(run, str(tmp_path / "off"))._prompt_group_size(roll) == 1
  # The prompts have several lengths: groups differ in their left padding.
  assert len(set(roll.valid[:, : roll.prompt_len].sum(1))) > 1
  m = roll.mask
  for dtype, tol in (("float32", 2e-5), ("bfloat16", 2e-2)):
    cfg = dataclasses.replace(r.model_cfg, dtype=dtype)

    @functools.partial(jax.jit, static_argnums=1)
    def grad_and_values(p, group_size, cfg=cfg):
      def loss(p):
        logp, ent = grpo.grpo_update.completion_logprobs(
            p, cfg, roll.tokens, roll.valid, roll.prompt_len, 0.7, group_size
        )
        return jnp.sum(jnp.where(m, logp + 0.1 * ent, 0.0)), (logp, ent)

      return jax.grad(loss, has_aux=True)(p)

    g1, (logp1, ent1) = grad_and_values(params, 1)
    gr, (logpr, entr) = grad_and_values(params, g)
    np.testing.assert_allclose(np.asarray(logpr)[m], logp1[m], atol=tol)
    np.testing.assert_allclose(np.asarray(entr)[m], ent1[m], atol=tol)
    for a, b in zip(jax.tree.leaves(gr), jax.tree.leaves(g1)):
      a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
      assert np.abs(a - b).max() <= tol * max(np.abs(b).max(), 1e-3)
  # A group whose rows have different prompts gets the per-row pass.
  roll.tokens[1, roll.prompt_len - 2] += 1
  assert trainer._prompt_group_size(roll) == 1
