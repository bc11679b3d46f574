"""RLCS stages: GenRM SFT on teacher chains, GenRM GRPO with entropy shaping,
and policy GRPO rewarded by GenRM pivot judging.

Training code here never sees the hidden rater: GenRM SFT uses the teacher's
reasoning chains (consistency-filtered against the rater's *labels*), GenRM
GRPO uses the labels only, and the policy reward is the trained GenRM.
"""

from __future__ import annotations

import functools
import os
import random
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from rlcs_jax import compiler
from rlcs_jax import sharding as shd
from rlcs_jax.data import jsonl
from rlcs_jax.genrm import consistency
from rlcs_jax.genrm import judge as judge_lib
from rlcs_jax.genrm import pivot as pivot_lib
from rlcs_jax.genrm import prompts as genrm_prompts
from rlcs_jax.genrm import verdict as verdict_lib
from rlcs_jax.grpo import logprobs as logprobs_lib
from rlcs_jax.grpo import shaping as shaping_lib
from rlcs_jax.model.transformer import Transformer, output_logits
from rlcs_jax.sampler import text as text_sampler
from rlcs_jax.trainers import grpo
from rlcs_jax.trainers import rewards as rewards_lib
from rlcs_jax.trainers import rollouts
from rlcs_jax.trainers import setup
from rlcs_jax.trainers import sft

ENTROPY_SOURCES = ("verdict", "response_mean", "group_vote")


# ----------------------------------------------------------------------------
# Data derived from the preference pairs.


def write_genrm_sft_data(pairs_path: str, out_path: str) -> dict[str, int]:
  """Consistency-filtered (judge prompt -> teacher chain) SFT examples.

  Each kept pair yields two examples, one per presentation order.
  """
  records = jsonl.read_jsonl(pairs_path, "pairs")
  kept, stats = consistency.consistent_pairs(records)
  rows = []
  for r in kept:
    rows.append(
        {
            "id": r["id"] + ":12",
            "response": r["teacher_12"],
            "prompt": genrm_prompts.build_judge_prompt(
                r["prompt"], r["response_1"], r["response_2"]
            ),
        }
    )
    rows.append(
        {
            "id": r["id"] + ":21",
            "response": r["teacher_21"],
            "prompt": genrm_prompts.build_judge_prompt(
                r["prompt"], r["response_2"], r["response_1"]
            ),
        }
    )
  if jax.process_index() == 0:
    jsonl.write_jsonl(out_path, rows)
  logging.info("GenRM SFT data: %s", stats)
  return dict(stats)


def write_judge_records(pairs_path: str, out_path: str, seed: int) -> str:
  """Labelled pairs as judge prompts in a random order (GenRM GRPO data).

  `context.correct` is the position (1 or 2) of the rater-preferred story.
  """
  rng = random.Random(seed)
  rows = []
  for r in jsonl.read_jsonl(pairs_path, "pairs"):
    swap = rng.random() < 0.5
    first, second = (
        (r["response_2"], r["response_1"])
        if swap
        else (r["response_1"], r["response_2"])
    )
    correct = (3 - r["label"]) if swap else r["label"]
    rows.append(
        {
            "id": r["id"],
            "reference": "",
            "prompt": genrm_prompts.build_judge_prompt(
                r["prompt"], first, second
            ),
            "context": {"correct": correct},
        }
    )
  if jax.process_index() == 0:
    jsonl.write_jsonl(out_path, rows)
  return out_path


# ----------------------------------------------------------------------------
# GenRM GRPO: correctness reward + entropy shaping.


def correctness_reward(batch: rewards_lib.RewardBatch) -> np.ndarray:
  """1 if the parsed verdict names the labelled winner, 0 if not, NaN on a
  format failure (shaping assigns those the failure reward)."""
  out = []
  for text, rec in zip(batch.completions, batch.records):
    v = verdict_lib.parse_verdict(text)
    out.append(
        np.nan
        if v.status != verdict_lib.OK
        else float(v.choice == rec["context"]["correct"])
    )
  return np.asarray(out)


@functools.partial(compiler.jit, static_argnames=("model_cfg", "prompt_len"))
def _response_entropy(params, tokens, valid, mask, *, model_cfg, prompt_len):
  hidden, _ = Transformer(model_cfg).apply(
      {"params": params},
      tokens[:, :-1],
      valid_BL=valid[:, :-1],
      return_hidden=True,
  )
  logits = output_logits(params, model_cfg, hidden[:, prompt_len - 1 :])
  _, ent = logprobs_lib.token_logprobs_and_entropy(
      logits, tokens[:, prompt_len:]
  )
  return shaping_lib.response_mean_entropy(ent, mask, model_cfg.vocab_size)


def reward_variances(rewards_PR: np.ndarray) -> dict[str, float]:
  """Variance of the rewards fed to group normalisation: over the whole
  batch, and the mean within-group variance (what GRPO's signal needs)."""
  r = np.asarray(rewards_PR, np.float64)
  return {
      "reward_var": float(np.var(r)),
      "reward_group_var": float(np.mean(np.var(r, axis=1))),
  }


def make_shaping_fn(
    config, judge: judge_lib.Judge, shaping: Any = None
) -> Callable:
  """shape_fn for `grpo.train`: entropy-shaped GenRM GRPO advantages.

  `shaping` is a section shaped like `config.genrm.shaping` (default that
  one); the no-shaping ablation passes a copy with `target="none"`.
  """
  sc = shaping if shaping is not None else config.genrm.shaping
  if sc.entropy_source not in ENTROPY_SOURCES:
    raise ValueError(
        f"genrm.shaping.entropy_source must be one of "
        f"{ENTROPY_SOURCES}, got {sc.entropy_source!r}"
    )
  cfg = shaping_lib.ShapingConfig(
      lambda_min=sc.lambda_min,
      target=sc.target,
      format_failure_reward=sc.format_failure_reward,
  )
  apply = compiler.jit(
      shaping_lib.apply_shaping, static_argnames=("cfg", "scale_by_std", "eps")
  )

  def shape_fn(trainer: grpo.GRPOTrainer, roll: rollouts.Rollout):
    p, r = roll.rewards.shape
    correct = roll.parts["correct"].reshape(p, r)
    format_ok = ~np.isnan(correct)
    choices = np.array(
        [(verdict_lib.parse_verdict(t).choice or 0) for t in roll.completions]
    ).reshape(p, r)
    if sc.entropy_source == "verdict":
      logits = judge.verdict_logits(
          roll.prompts, roll.completions, params=trainer.state.params
      )
      ent = np.asarray(
          shaping_lib.verdict_entropy(jnp.asarray(np.nan_to_num(logits)))
      )
    elif sc.entropy_source == "response_mean":
      ent = np.asarray(
          _response_entropy(
              trainer.state.params,
              roll.tokens,
              roll.valid,
              roll.mask.astype(np.float32),
              model_cfg=trainer.model_cfg,
              prompt_len=roll.prompt_len,
          )
      )
    else:
      ent = np.asarray(
          shaping_lib.group_vote_entropy(
              jnp.asarray(choices), jnp.asarray(format_ok)
          )
      )
    rewards, adv, weight, metrics = apply(
        jnp.asarray(np.nan_to_num(correct)),
        jnp.asarray(format_ok),
        jnp.asarray(ent.reshape(p, r), jnp.float32),
        cfg,
        scale_by_std=trainer.cfg.scale_by_std,
        eps=trainer.cfg.adv_eps,
    )
    out = {
        f"shaping/{k}": v for k, v in grpo.metrics_lib.to_host(metrics).items()
    }
    out.update(
        {f"shaping/{k}": v for k, v in reward_variances(rewards).items()}
    )
    roll.rewards = np.asarray(rewards)  # Logged reward = shaped reward.
    return np.asarray(adv), np.asarray(weight), out

  return shape_fn


# ----------------------------------------------------------------------------
# Stages. Each is idempotent on the workdir: a finished stage loads its final
# parameters, an interrupted one resumes from its checkpoint. `stage` names
# the directory (and metrics stage) so ablations can run beside the default.


GENERATION_CHUNK = 32  # Rows per sampler call in judging and evaluation.


def rows_sharding(mesh, rows: int = GENERATION_CHUNK):
  """Batch sharding for `rows`-row generation when the mesh divides it, so
  each device samples its share instead of all of them; None (replicated)
  otherwise, and with several processes, where `generate_text` reads its
  outputs back on the host (only a replicated result is addressable)."""
  if jax.process_count() > 1 or rows % shd.batch_divisor(mesh):
    return None
  return shd.batch_sharding(mesh)


def make_judge(run, params) -> judge_lib.Judge:
  cfg = text_sampler.sampling_config(
      run.config.sampler,
      run.tokenizer,
      greedy=True,
      max_new_tokens=run.config.genrm.max_new_tokens,
  )
  return judge_lib.Judge(
      params,
      run.model_cfg,
      run.tokenizer,
      cfg,
      chunk_size=GENERATION_CHUNK,
      batch_sharding=rows_sharding(run.mesh),
  )


def _is_fresh(out: str, source: str) -> bool:
  """`out` exists and is newer than `source` (derived data is reusable, and
  rewriting it would change the TFDS fingerprint and rebuild the dataset)."""
  return os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(
      source
  )


def genrm_sft(run, init_params, *, stage: str = "genrm_sft") -> Any:
  if sft.stage_is_done(run.workdir, stage):
    return sft.load_stage_params(
        run.workdir, stage, run.model_cfg, run.mesh, run.rules
    )
  path = os.path.join(run.workdir, "data", "genrm", "sft_train.jsonl")
  if not _is_fresh(path, run.files["pairs_train"]):
    write_genrm_sft_data(run.files["pairs_train"], path)
  setup.sync("genrm_sft_data")
  source = setup.datasets("sft", {"train": path}, run.workdir)["train"]
  return sft.train(
      run.config,
      run.workdir,
      stage=stage,
      model_cfg=run.model_cfg,
      tokenizer=run.tokenizer,
      mesh=run.mesh,
      train_source=source,
      init_params=init_params,
      section=run.config.genrm.sft,
      seq_len=run.config.genrm.seq_len,
      stop=run.stop,
  )


def no_shaping(config) -> Any:
  """A copy of `config.genrm.shaping` with `target="none"` (plain ±1)."""
  section = config.genrm.shaping.copy_and_resolve_references()
  section.target = "none"  # An existing key: allowed on a locked copy.
  return section


def genrm_grpo(
    run, init_params, *, stage: str = "genrm_grpo", shaping: Any = None
) -> Any:
  """GenRM GRPO on labelled pairs; `shaping` as in `make_shaping_fn`."""
  if sft.stage_is_done(run.workdir, stage):
    return sft.load_stage_params(
        run.workdir, stage, run.model_cfg, run.mesh, run.rules
    )
  path = os.path.join(run.workdir, "data", "genrm", "judge_train.jsonl")
  if not _is_fresh(path, run.files["pairs_train"]):
    write_judge_records(run.files["pairs_train"], path, run.config.seed)
  setup.sync("genrm_judge_data")
  source = setup.datasets("contexts", {"train": path}, run.workdir)["train"]
  components = [rewards_lib.RewardComponent("correct", correctness_reward, 1.0)]
  trainer = grpo.GRPOTrainer(
      run.config,
      run.workdir,
      stage=stage,
      model_cfg=run.model_cfg,
      tokenizer=run.tokenizer,
      mesh=run.mesh,
      init_params=init_params,
      reward_components=components,
      section=run.config.genrm_grpo,
  )
  judge = make_judge(run, init_params)
  return grpo.train(
      trainer,
      source,
      prompt_kind="contexts",
      stop=run.stop,
      shape_fn=make_shaping_fn(run.config, judge, shaping),
  )


def pivot_reward_component(run, genrm_params) -> rewards_lib.RewardComponent:
  """The GenRM as a policy reward (batched through the sampler)."""
  judge = make_judge(run, genrm_params)
  mode = run.config.genrm.pivot_mode
  calls = {"n": 0}

  def fn(batch: rewards_lib.RewardBatch) -> np.ndarray:
    calls["n"] += 1
    key = jax.random.fold_in(jax.random.key(run.config.seed + 7), calls["n"])
    rng = np.random.default_rng([run.config.seed, calls["n"]])
    judge_fn = lambda c, a, b: judge.judge(c, a, b, key).choices
    rewards, stats = pivot_lib.pivot_rewards(
        batch.prompts,
        batch.completions,
        batch.group_size,
        judge_fn,
        rng,
        mode=mode,
        references=[r.get("reference", "") for r in batch.records],
    )
    fn.last_stats = stats
    return rewards

  return rewards_lib.RewardComponent("genrm_pivot", fn, 1.0)


def policy_grpo(
    run, policy_params, genrm_params, *, stage: str = "rlcs_policy"
) -> Any:
  if sft.stage_is_done(run.workdir, stage):
    return sft.load_stage_params(
        run.workdir, stage, run.model_cfg, run.mesh, run.rules
    )
  g = run.config.rlcs_grpo
  kind = setup.SPLIT_KINDS[g.prompt_split]
  source = setup.datasets(
      kind, {"train": run.files[g.prompt_split]}, run.workdir
  )["train"]
  component = pivot_reward_component(run, genrm_params)

  def log_judge(step, roll, metrics):
    del step, roll
    stats = component.fn.last_stats
    metrics["genrm/format_failure_rate"] = stats.format_failures / max(
        stats.comparisons, 1
    )

  trainer = grpo.GRPOTrainer(
      run.config,
      run.workdir,
      stage=stage,
      model_cfg=run.model_cfg,
      tokenizer=run.tokenizer,
      mesh=run.mesh,
      init_params=policy_params,
      reward_components=[component],
      section=g,
  )
  return grpo.train(
      trainer, source, prompt_kind=kind, stop=run.stop, on_step=log_judge
  )


def scalar_rm(run, policy_params, *, stage: str = "scalar_rm") -> Any:
  """Bradley-Terry scalar RM on the same pairs (the GenRM's baseline and
  RLMR's writing score), starting from the policy."""
  from rlcs_jax.trainers import reward_model

  if sft.stage_is_done(run.workdir, stage):
    return reward_model.load_params(
        run.workdir, stage, run.model_cfg, run.mesh, run.rules
    )
  splits = {
      k: run.files[k] for k in ("pairs_train", "pairs_eval") if run.files.get(k)
  }
  sources = setup.datasets("pairs", splits, run.workdir)
  return reward_model.train_scalar_rm(
      run.config,
      run.workdir,
      stage=stage,
      model_cfg=run.model_cfg,
      tokenizer=run.tokenizer,
      mesh=run.mesh,
      pairs_source=sources["pairs_train"],
      init_backbone=policy_params,
      eval_source=sources.get("pairs_eval"),
      stop=run.stop,
  )


# ----------------------------------------------------------------------------
# Evaluation (may see the hidden rater: `eval/rlcs_eval.py`).


def eval_pairs(run) -> list[dict[str, Any]]:
  return jsonl.read_jsonl(run.files["pairs_eval"], "pairs")[
      : run.config.genrm.eval_pairs
  ]


def rater_ceiling(run) -> float:
  from rlcs_jax.eval import rlcs_eval

  return rlcs_eval.rater_ceiling(
      eval_pairs(run), run.config.data.storyworld.seed
  )


def genrm_agreement(run, genrm_params) -> dict[str, float]:
  """Held-out agreement of a GenRM with the rater's labels, both orders."""
  from rlcs_jax.eval import rlcs_eval

  return rlcs_eval.judge_agreement(
      make_judge(run, genrm_params), eval_pairs(run)
  )


def scalar_rm_agreement(run, rm_params) -> dict[str, float]:
  from rlcs_jax.eval import rlcs_eval
  from rlcs_jax.trainers import reward_model

  scorer = reward_model.make_scorer(rm_params, run.model_cfg, run.tokenizer)
  return rlcs_eval.scorer_agreement(
      scorer, eval_pairs(run)[: run.config.scalar_rm.eval_pairs]
  )


def policy_win_rates(
    run, sft_params, rl_params, genrm_params, *, stage: str = "rlcs_policy"
) -> dict[str, Any]:
  """RL policy vs SFT on held-out contexts, judged by the hidden rater and
  by the GenRM; samples go to W/<stage>/eval_samples.jsonl."""
  from rlcs_jax.eval import rlcs_eval

  cfg = run.config
  contexts = jsonl.read_jsonl(run.files["contexts_eval"], "contexts")[
      : cfg.genrm.win_prompts
  ]
  prompts = [r["prompt"] for r in contexts]
  scfg = text_sampler.sampling_config(
      cfg.sampler,
      run.tokenizer,
      temperature=0.7,
      max_new_tokens=cfg.rlcs_grpo.max_new_tokens,
  )
  key = jax.random.key(cfg.seed + 11)
  texts = {
      name: text_sampler.generate_text(
          p,
          run.model_cfg,
          run.tokenizer,
          prompts,
          scfg,
          key,
          chunk_size=GENERATION_CHUNK,
          batch_sharding=rows_sharding(run.mesh),
      ).texts
      for name, p in (("sft", sft_params), ("rl", rl_params))
  }
  out = {
      "win_rate_rl_vs_sft_rater": rlcs_eval.win_rate_by_rater(
          [r["context"] for r in contexts],
          texts["rl"],
          texts["sft"],
          cfg.data.storyworld.seed,
      ),
      "win_rate_rl_vs_sft_genrm": rlcs_eval.win_rate_by_judge(
          make_judge(run, genrm_params), prompts, texts["rl"], texts["sft"]
      ),
  }
  if jax.process_index() == 0:
    jsonl.write_jsonl(
        os.path.join(run.workdir, stage, "eval_samples.jsonl"),
        [
            {"prompt": p, "sft": a, "rl": b}
            for p, a, b in zip(prompts, texts["sft"], texts["rl"])
        ],
    )
  return out


def reward_variance(workdir: str, stage: str) -> dict[str, float]:
  """Mean over the steps of a GenRM GRPO stage of its logged reward
  variances (`shaping/reward_var`, `shaping/reward_group_var`)."""
  from rlcs_jax import metrics as metrics_lib

  rows = [
      r
      for r in metrics_lib.read_metrics(workdir, stage)
      if "shaping/reward_var" in r
  ]
  out = {"steps": len(rows)}
  for key in ("reward_var", "reward_group_var"):
    vals = [r[f"shaping/{key}"] for r in rows]
    out[key] = float(np.mean(vals)) if vals else float("nan")
  return out


def run_all(run, policy_params) -> dict[str, Any]:
  """Scalar RM, GenRM SFT -> GenRM GRPO -> policy GRPO (pivot); returns
  every stage's parameters by stage name (evaluated by
  `pipeline.evaluate_rlcs`)."""
  params = {"sft": policy_params}
  params["scalar_rm"] = scalar_rm(run, policy_params)
  params["genrm_sft"] = genrm_sft(run, policy_params)
  params["genrm_grpo"] = genrm_grpo(run, params["genrm_sft"])
  params["rlcs_policy"] = policy_grpo(run, policy_params, params["genrm_grpo"])
  return params
