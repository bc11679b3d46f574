"""RLMR job: the reward hook equals `mixed_reward`; a 2-step run end to end."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import rlmr_tiny
from rlcs_jax import metrics as metrics_lib
from rlcs_jax.data import jsonl
from rlcs_jax.grpo import advantages as adv_lib
from rlcs_jax.grpo import mixing
from rlcs_jax.model import hf_checkpoint
from rlcs_jax.model.config import ModelConfig
from rlcs_jax.trainers import jobs
from rlcs_jax.trainers import rewards as rewards_lib
from rlcs_jax.trainers import rlmr
from rlcs_jax.trainers import state as state_lib
from rlcs_jax.verifiers import ifeval_io

# Jitted references: one compile each instead of many eager-op compiles.
_mixed_reward = jax.jit(mixing.mixed_reward, static_argnames=("cfg",))
_group_advantages = jax.jit(adv_lib.group_advantages)


def _batch(n: int, group_size: int) -> rewards_lib.RewardBatch:
  return rewards_lib.RewardBatch(
      prompts=[""] * n,
      completions=[""] * n,
      completion_ids=[[]] * n,
      truncated=np.zeros(n, bool),
      records=[{}] * n,
      group_size=group_size,
  )


def test_combine_matches_mixed_reward():
  rng = np.random.default_rng(0)
  p, r = 6, 4
  w = rng.normal(size=(p, r)).astype(np.float32)
  v = (rng.random((p, r)) < 0.5).astype(np.float32)
  w[0], v[0] = [1.0, 0.95, 0.0, 0.0], [0, 1, 1, 1]  # SPEC §4's group.
  v[1], v[2] = 0, 1  # No violator; all violate.
  w[3, 1] = np.nan  # An unscored response.
  parts = {"writing": w.reshape(-1), "violation": v.reshape(-1)}
  # The hook is rule-agnostic: two rules show the [N] <-> [P, R] grouping.
  for rule in ("rlmr", "fixed_mix"):
    mix = mixing.MixConfig(rule=rule, delta=0.1, alpha=0.3)
    got = rlmr.make_combine(mix)(_batch(p * r, r), np.zeros(p * r), parts)
    want, _ = _mixed_reward(jnp.asarray(w), jnp.asarray(v), cfg=mix)
    assert got.shape == (p * r,)
    np.testing.assert_allclose(
        got.reshape(p, r), np.asarray(want), rtol=1e-6, err_msg=rule
    )


def test_combine_spec_example_by_hand():
  # λ = 4·(0.95 − 0.4875 + 0.1) = 2.25; every violator below the mean.
  parts = {
      "writing": np.array([1.0, 0.95, 0.0, 0.0]),
      "violation": np.array([0.0, 1.0, 1.0, 1.0]),
  }
  got = rlmr.make_combine(mixing.MixConfig())(_batch(4, 4), np.zeros(4), parts)
  np.testing.assert_allclose(got, [1.0, 0.95 - 2.25, -2.25, -2.25], rtol=1e-5)
  adv, _ = _group_advantages(jnp.asarray(got[None]))
  assert np.all(np.asarray(adv)[0, 1:] < 0) and np.asarray(adv)[0, 0] > 0


def test_heuristic_writing_score():
  score = lambda t: rlmr.heuristic_writing_score(t, target_words=10)
  good = (
      "The lamp flickered once. Mira crossed the bridge and counted the "
      "boats below."
  )
  assert score("") == 0.0 and score("   ") == 0.0
  assert 0.0 <= score(good) <= 1.0
  assert score(good) > score("the boat the boat the boat the boat the boat.")
  assert score(good) > score(good[:-1] + " and")  # Cut off mid-sentence.
  assert score(good) > score("Mira left.")  # Too short.


def test_scorer_reward_passes_prompts_and_completions():
  seen = []

  def scorer(prompts, responses):
    seen.append((list(prompts), list(responses)))
    return np.array([len(r) for r in responses], np.float32)

  batch = _batch(2, 2)
  batch.prompts, batch.completions = ["p", "p"], ["ab", "abcd"]
  np.testing.assert_array_equal(rlmr.scorer_reward(scorer)(batch), [2, 4])
  assert seen == [(["p", "p"], ["ab", "abcd"])]
  assert set(rlmr.WRITING_SCORERS) >= {"heuristic", "scalar_rm"}


def test_constraint_metrics_by_hand():
  ids = ["punctuation:no_comma", "change_case:english_lowercase"]
  records = [
      {"prompt": "a", "instruction_id_list": ids, "kwargs": [{}, {}]},
      {"prompt": "b", "instruction_id_list": ids, "kwargs": [{}, {}]},
      {"prompt": "c", "instruction_id_list": ids, "kwargs": [{}, {}]},
      {"prompt": "d", "instruction_id_list": [], "kwargs": []},
  ]
  texts = ["all quiet here.", "Loud, here.", "no commas But Caps.", "x"]
  m = rlmr.constraint_metrics(records, texts)
  assert m["constraint/prompt_pass_rate"] == pytest.approx(1 / 3)
  assert m["constraint/instruction_pass_rate"] == pytest.approx(3 / 6)
  assert m["constraint/punctuation:no_comma"] == pytest.approx(2 / 3)
  assert m["constraint/change_case:english_lowercase"] == pytest.approx(1 / 3)
  assert m["constraint/constrained_frac"] == pytest.approx(3 / 4)


def test_config_validation_names_the_key():
  c = rlmr_tiny.get_config("test")
  rlmr.RLMRConfig.from_config(c.rlmr)
  for key, value, match in (
      ("rule", "nope", "rlmr: rule"),
      ("violation", "all", "rlmr.violation"),
      ("writing_score", "rater", "rlmr.writing_score"),
  ):
    bad = c.rlmr.copy_and_resolve_references()
    bad.unlock()
    bad[key] = value
    with pytest.raises(ValueError, match=match):
      rlmr.RLMRConfig.from_config(bad)


def test_holdout_split(tmp_path):
  src = tmp_path / "prompts.jsonl"
  ifeval_io.write_jsonl(
      src,
      [
          {"key": i, "prompt": f"p{i}", "instruction_id_list": [], "kwargs": []}
          for i in range(10)
      ],
  )
  c = rlmr_tiny.get_config("test")
  files = {"constraints_train": str(src)}
  train, held = rlmr.prompt_files(c, files, str(tmp_path), holdout=3)
  tk = [r["key"] for r in jsonl.read_jsonl(train, "ifeval")]
  hk = [r["key"] for r in jsonl.read_jsonl(held, "ifeval")]
  assert len(hk) == 3 and sorted(tk + hk) == list(range(10))
  with pytest.raises(ValueError, match="rlmr.holdout"):
    rlmr.prompt_files(c, files, str(tmp_path), holdout=0)
  with pytest.raises(ValueError, match="no training prompts"):
    rlmr.prompt_files(c, files, str(tmp_path / "x"), holdout=10)


def test_constraint_demos_join_the_sft_file(tmp_path):
  rows = lambda split, n: [
      {"id": f"{split}-{i}", "prompt": "p", "response": "r"} for i in range(n)
  ]
  files = {
      "sft_train": str(tmp_path / "a.jsonl"),
      "sft_constraints": str(tmp_path / "b.jsonl"),
  }
  jsonl.write_jsonl(files["sft_train"], rows("sft_train", 3))
  jsonl.write_jsonl(files["sft_constraints"], rows("sft_constraints", 2))
  out = rlmr.with_constraint_demos(files, str(tmp_path))
  assert out["sft_constraints"] == files["sft_constraints"]
  ids = [r["id"] for r in jsonl.read_jsonl(out["sft_train"], "sft")]
  assert ids == [f"sft_train-{i}" for i in range(3)] + [
      "sft_constraints-0",
      "sft_constraints-1",
  ]
  del files["sft_constraints"]
  assert rlmr.with_constraint_demos(files, str(tmp_path)) == files


def _with(config, **overrides):
  c = config.copy_and_resolve_references()
  c.unlock()
  for k, v in overrides.items():
    node = c
    *path, last = k.split(".")
    for part in path:
      node = node[part]
    node[last] = v
  c.lock()
  return c


def _random_hf_checkpoint(config, path: str) -> None:
  """A random test-size model as an HF checkpoint, made on the host (no
  init compile): stands in for pretrained weights."""
  cfg = ModelConfig.from_config(
      config.model, vocab_size=config.tokenizer.vocab_size
  )
  rng = np.random.default_rng(0)

  def leaf(key_path, a):
    if "norm" in jax.tree_util.keystr(key_path):
      return np.ones(a.shape, a.dtype)
    return (0.05 * rng.standard_normal(a.shape)).astype(a.dtype)

  params = jax.tree_util.tree_map_with_path(
      leaf, state_lib.abstract_params(cfg)
  )
  hf_checkpoint.save_hf_checkpoint(params, cfg, path)


def _check_run(wd: str, eval_prompts: int) -> None:
  with open(os.path.join(wd, "rlmr", "results.json")) as f:
    results = json.load(f)
  assert results["settings"]["rule"] == "rlmr"
  for tag in ("before", "after"):
    res = results[tag]
    for k in (
        "prompt_strict",
        "prompt_loose",
        "instruction_strict",
        "instruction_loose",
        "writing_mean",
    ):
      assert 0.0 <= res[k] <= 1.0, (tag, k)
    assert res["num_prompts"] == eval_prompts  # Prompts with constraints.
    assert res["ifeval"]["num_instructions"] >= eval_prompts
    responses = ifeval_io.read_responses(
        os.path.join(wd, "rlmr", f"responses_{tag}.jsonl")
    )
    assert len(responses) == eval_prompts
  rows = metrics_lib.read_metrics(wd, "rlmr")
  assert [r["step"] for r in rows] == [1, 2]
  for row in rows:
    for k in (
        "constraint/prompt_pass_rate",
        "rlmr/violator_rate",
        "rlmr/lambda_mean",
        "reward/writing_mean",
        "reward/violation_mean",
        "loss",
    ):
      assert k in row, k
    per_type = [k for k in row if k.startswith("constraint/") and ":" in k]
    assert per_type  # Pass rate per instruction type.


def test_rlmr_job_two_steps_from_pretrained(tmp_path):
  """rlmr_tiny:test without SFT (sft.steps=0 + init.kind=hf): the job's
  evaluation, mixed-reward GRPO, metrics and results, quickly."""
  base = rlmr_tiny.get_config("test")
  ckpt = str(tmp_path / "pretrained")
  _random_hf_checkpoint(base, ckpt)
  config = _with(
      base,
      **{
          "sft.steps": 0,
          "init.kind": "hf",
          "init.path": ckpt,
          "rlmr.writing_score": "heuristic",
      },
  )
  wd = str(tmp_path / "run")
  jobs.JOBS["rlmr"](config, wd)
  _check_run(wd, config.rlmr_grpo.eval_prompts)
  assert not os.path.exists(os.path.join(wd, "sft"))


@pytest.mark.slow
def test_rlmr_job_two_steps_with_sft(tmp_path):
  """The whole rlmr_tiny:test job: SFT on sft_train + constraint demos,
  the scalar RM as writing score, GRPO, evaluation."""
  wd = str(tmp_path)
  config = rlmr_tiny.get_config("test")
  jobs.JOBS["rlmr"](config, wd)
  _check_run(wd, config.rlmr_grpo.eval_prompts)
  # Policy SFT saw sft_train (200) plus the constraint demos (40).
  sft_rows = jsonl.read_jsonl(
      os.path.join(wd, "data", "rlmr_sft_train.jsonl"), "sft"
  )
  assert len(sft_rows) == 240
  assert os.path.exists(os.path.join(wd, "sft", "final_params"))
  assert os.path.exists(os.path.join(wd, "scalar_rm", "final_params"))
