"""RLMR job: GRPO whose reward mixes a writing score with constraint checks.

Stages (SPEC §4), each idempotent on the workdir:

1. Policy SFT (`jobs.policy_sft`). With `rlmr.sft_include_constraints` the
   StoryWorld `sft_constraints` demonstrations (constraint-bearing prompts,
   about half compliant) are appended to `sft_train`, so the policy has seen
   constraint prompts before RL. `sft.steps=0` starts from the pretrained
   weights instead.
2. The writing scorer, `WRITING_SCORERS[rlmr.writing_score]`: `scalar_rm`
   trains (or loads) a Bradley-Terry reward model on `pairs_train` starting
   from the policy; `heuristic` is a text statistic needing no training.
3. Evaluation "before" of the SFT policy on held-out IFEval-format prompts
   (`rlmr_eval.evaluate_sft`, once per workdir).
4. GRPO (`config.rlmr_grpo`) on `rlmr_grpo.prompt_split` prompts. Two reward
   components are computed per completion: `writing` (w) and `violation`
   (v, from the verifiers: 1 if any instruction fails, or the fraction
   failed). The trainer's `combine_rewards` hook replaces their weighted
   sum by `grpo/mixing.mixed_reward(w_PR, v_PR)` under `rlmr.rule`.
5. Evaluation "after" and the hidden rater's writing-quality win rate
   against the SFT policy (`rlmr_eval`); all go to `W/rlmr/results.json`,
   the generations to `W/rlmr/responses_{before,after}.jsonl` (IFEval
   response format, so the `ifeval_eval` job can read them).

`rlmr_stage(..., stage=S, rule=R)` runs steps 4-5 for another mixing rule
in `W/S/` from the same SFT policy and writing scorer (the baselines of the
`pipeline` job's ablations).

Per-step metrics (same metrics.jsonl row as the GRPO ones, stage `rlmr`):
`constraint/prompt_pass_rate`, `constraint/instruction_pass_rate`,
`constraint/<instruction id>` (pass rate per instruction type among this
step's completions), `rlmr/lambda_mean`, `rlmr/violator_rate`,
`rlmr/mixed_group_frac`, `rlmr/writing_mean`, ...

Training code never sees the hidden rater: writing scores come from a reward
model trained on preference labels, or from the text heuristic below.

Shape legend: P prompts per step, R completions per prompt (the group),
N = P*R.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from typing import TYPE_CHECKING, Any, Callable, Sequence

from absl import logging
import jax
import ml_collections
import numpy as np

from rlcs_jax import compiler
from rlcs_jax import metrics as metrics_lib
from rlcs_jax.data import jsonl
from rlcs_jax.grpo import mixing
from rlcs_jax.trainers import grpo
from rlcs_jax.trainers import reward_model
from rlcs_jax.trainers import rewards as rewards_lib
from rlcs_jax.trainers import rlcs
from rlcs_jax.trainers import rlmr_eval
from rlcs_jax.trainers import rollouts
from rlcs_jax.trainers import setup
from rlcs_jax.trainers import sft
from rlcs_jax.verifiers import scoring

if TYPE_CHECKING:
  from rlcs_jax.trainers import jobs

STAGE = "rlmr"
RESULTS = rlmr_eval.RESULTS

# ----------------------------------------------------------------------------
# Writing scores.

_WORD = re.compile(r"\w+")
# Sentence-final punctuation, optionally followed by closing quotes/brackets.
_CLEAN_END = re.compile(r"[.!?…][\"'”’)\]]*$")


def heuristic_writing_score(text: str, target_words: int) -> float:
  """A training-legal proxy of writing quality in [0, 1] (not the rater).

  The mean of four text statistics, each in [0, 1]:
    length      min(1, words / target_words): very short answers score low;
    variety     distinct / total words over the first 100 words;
    repetition  1 - the fraction of word trigrams that repeat an earlier one
                (degenerate loops score low);
    ending      1 if the text ends with sentence-final punctuation (a
                finished sentence, not a cut-off).
  Blank text scores 0. It knows nothing about StoryWorld's quality
  dimensions; it only rewards fluent-looking, non-degenerate text of
  reasonable length.
  """
  words = [w.lower() for w in _WORD.findall(text)]
  if not words:
    return 0.0
  length = min(1.0, len(words) / target_words)
  head = words[:100]
  variety = len(set(head)) / len(head)
  trigrams = list(zip(words, words[1:], words[2:]))
  repetition = len(set(trigrams)) / len(trigrams) if trigrams else 1.0
  ending = float(bool(_CLEAN_END.search(text.strip())))
  return (length + variety + repetition + ending) / 4.0


def _heuristic_scorer(run: "jobs.Run", policy: Any) -> rewards_lib.RewardFn:
  del policy
  target = run.config.rlmr.heuristic_words

  def fn(batch: rewards_lib.RewardBatch) -> np.ndarray:
    return np.array(
        [heuristic_writing_score(c, target) for c in batch.completions]
    )

  return fn


def scorer_reward(
    scorer: Callable[[Sequence[str], Sequence[str]], np.ndarray],
) -> rewards_lib.RewardFn:
  """A `(prompts, responses) -> scores` model as a reward function."""

  def fn(batch: rewards_lib.RewardBatch) -> np.ndarray:
    return np.asarray(scorer(batch.prompts, batch.completions), np.float64)

  return fn


SCALAR_RM_STAGE = "scalar_rm"


def _scalar_rm_scorer(run: "jobs.Run", policy: Any) -> rewards_lib.RewardFn:
  """Bradley-Terry RM trained (or loaded) on `pairs_train` from the policy.

  It sees preference labels and texts only (never the hidden rater); its
  scores are unbounded logits, so `rlmr.delta` is in logit units.
  """
  if "pairs_train" not in run.files:
    raise ValueError(
        "rlmr.writing_score=scalar_rm trains on preference pairs: set "
        "data.files.pairs_train (StoryWorld has them) or use "
        "rlmr.writing_score=heuristic"
    )
  params = rlcs.scalar_rm(run, policy, stage=SCALAR_RM_STAGE)
  # Scores up to the model's context: constraint prompts run long.
  return scorer_reward(
      reward_model.make_scorer(params, run.model_cfg, run.tokenizer)
  )


# Writing-score sources by `rlmr.writing_score`: factory(run, policy params)
# -> reward function of a `RewardBatch` (one float per completion, NaN = not
# scored). A GenRM source ("genrm": win rate within the group) belongs here
# as a factory that trains or loads the judge from the run's workdir.
WRITING_SCORERS: dict[
    str, Callable[["jobs.Run", Any], rewards_lib.RewardFn]
] = {
    "heuristic": _heuristic_scorer,
    "scalar_rm": _scalar_rm_scorer,
}


# ----------------------------------------------------------------------------
# Settings.


@dataclasses.dataclass(frozen=True)
class RLMRConfig:
  """Validated `config.rlmr`."""

  mix: mixing.MixConfig
  violation: str  # any | fraction
  verifier_mode: str  # strict | loose
  writing_score: str
  sft_include_constraints: bool
  holdout: int

  def __post_init__(self):
    if self.violation not in scoring.VIOLATION_KINDS:
      raise ValueError(
          f"rlmr.violation must be one of {scoring.VIOLATION_KINDS}, got "
          f"{self.violation!r}"
      )
    if self.verifier_mode not in scoring.MODES:
      raise ValueError(
          f"rlmr.verifier_mode must be one of {scoring.MODES}, got "
          f"{self.verifier_mode!r}"
      )
    if self.writing_score not in WRITING_SCORERS:
      raise ValueError(
          f"rlmr.writing_score must be one of {sorted(WRITING_SCORERS)}, "
          f"got {self.writing_score!r}"
      )
    if self.holdout < 0:
      raise ValueError(f"rlmr.holdout must be >= 0, got {self.holdout}")

  @classmethod
  def from_config(cls, r: ml_collections.ConfigDict) -> "RLMRConfig":
    if r.heuristic_words <= 0:
      raise ValueError(
          f"rlmr.heuristic_words must be > 0, got {r.heuristic_words}"
      )
    try:
      mix = mixing.MixConfig(
          rule=r.rule,
          delta=float(r.delta),
          alpha=float(r.alpha),
          all_violate_mode=r.all_violate_mode,
      )
    except ValueError as e:
      raise ValueError(f"rlmr: {e}") from e
    return cls(
        mix=mix,
        violation=r.violation,
        verifier_mode=r.verifier_mode,
        writing_score=r.writing_score,
        sft_include_constraints=r.sft_include_constraints,
        holdout=r.holdout,
    )


# ----------------------------------------------------------------------------
# Rewards and per-step metrics.

_mixed_reward = compiler.jit(mixing.mixed_reward, static_argnames=("cfg",))


def reward_components(
    rc: RLMRConfig, writing_fn: rewards_lib.RewardFn
) -> list[rewards_lib.RewardComponent]:
  """`writing` and `violation` (weights unused: see `make_combine`)."""
  return [
      rewards_lib.RewardComponent("writing", writing_fn, 1.0),
      rewards_lib.RewardComponent(
          "violation",
          rewards_lib.constraint_violation(rc.verifier_mode, rc.violation),
          0.0,
      ),
  ]


def make_combine(
    mix: mixing.MixConfig,
) -> Callable[[rewards_lib.RewardBatch, np.ndarray, dict], np.ndarray]:
  """The trainer's `combine_rewards` hook: [N] parts -> mixed rewards [N]."""

  def combine(batch, total, parts):
    del total  # The weighted sum is replaced by the per-group mix.
    r = batch.group_size
    w_PR = np.asarray(parts["writing"], np.float32).reshape(-1, r)
    v_PR = np.asarray(parts["violation"], np.float32).reshape(-1, r)
    reward_PR, _ = _mixed_reward(w_PR, v_PR, cfg=mix)
    return np.asarray(reward_PR, np.float32).reshape(-1)

  return combine


def constraint_metrics(
    records: Sequence[dict[str, Any]],
    completions: Sequence[str],
    mode: str = "strict",
) -> dict[str, float]:
  """Pass rates of completions with >= 1 instruction, overall and per id."""
  per_id = collections.defaultdict(list)
  prompt_ok = []
  for record, text in zip(records, completions):
    ids = record["instruction_id_list"]
    if not ids:
      continue
    ok = scoring.check_prompt(
        ids, record["kwargs"], text, prompt=record["prompt"], mode=mode
    )
    prompt_ok.append(all(ok))
    for instruction_id, passed in zip(ids, ok):
      per_id[instruction_id].append(passed)
  nan = float("nan")
  every = [p for v in per_id.values() for p in v]
  out = {
      "constraint/prompt_pass_rate": (
          float(np.mean(prompt_ok)) if prompt_ok else nan
      ),
      "constraint/instruction_pass_rate": (
          float(np.mean(every)) if every else nan
      ),
      "constraint/constrained_frac": len(prompt_ok) / max(len(records), 1),
  }
  for instruction_id, passed in sorted(per_id.items()):
    out[f"constraint/{instruction_id}"] = float(np.mean(passed))
  return out


def step_metrics(roll: rollouts.Rollout, rc: RLMRConfig) -> dict[str, float]:
  """Constraint pass rates and the mix's statistics of one rollout."""
  p, r = roll.rewards.shape
  w_PR = np.asarray(roll.parts["writing"], np.float32).reshape(p, r)
  v_PR = np.asarray(roll.parts["violation"], np.float32).reshape(p, r)
  _, mix_metrics = _mixed_reward(w_PR, v_PR, cfg=rc.mix)
  out = {f"rlmr/{k}": v for k, v in metrics_lib.to_host(mix_metrics).items()}
  out.update(
      constraint_metrics(roll.records, roll.completions, rc.verifier_mode)
  )
  return out


# ----------------------------------------------------------------------------
# Data.


def _fresh(out: str, sources: Sequence[str]) -> bool:
  return os.path.exists(out) and all(
      os.path.getmtime(out) >= os.path.getmtime(s) for s in sources
  )


def with_constraint_demos(
    files: dict[str, str], workdir: str
) -> dict[str, str]:
  """Files with `sft_train` = sft_train + sft_constraints (one SFT file)."""
  if "sft_constraints" not in files or "sft_train" not in files:
    logging.info("rlmr: no sft_constraints split; policy SFT on sft_train only")
    return files
  sources = [files["sft_train"], files["sft_constraints"]]
  out = os.path.join(workdir, "data", "rlmr_sft_train.jsonl")
  if jax.process_index() == 0 and not _fresh(out, sources):
    rows = [r for path in sources for r in jsonl.iter_jsonl(path, "sft")]
    jsonl.write_jsonl(out, rows)
    logging.info("rlmr: policy SFT data %s (%d examples)", out, len(rows))
  setup.sync("rlmr_sft_data")
  return {**files, "sft_train": out}


def prompt_files(
    config: ml_collections.ConfigDict,
    files: dict[str, str],
    workdir: str,
    holdout: int,
) -> tuple[str, str]:
  """(train prompts, eval prompts) paths, holding out prompts if asked."""
  split = config.rlmr_grpo.prompt_split
  if setup.SPLIT_KINDS.get(split) != "ifeval":
    raise ValueError(
        f"rlmr_grpo.prompt_split={split!r} must be an IFEval-format split "
        f"(constraints_train or constraints_eval)"
    )
  if split not in files:
    raise ValueError(
        f"rlmr_grpo.prompt_split={split!r} has no data file; set "
        f"data.files.{split}"
    )
  if not holdout:
    eval_split = split.replace("_train", "_eval")
    if eval_split == split or eval_split not in files:
      raise ValueError(
          f"no held-out prompts for {split}: set data.files.{eval_split} or "
          "rlmr.holdout > 0"
      )
    return files[split], files[eval_split]
  records = jsonl.read_jsonl(files[split], "ifeval")
  if holdout >= len(records):
    raise ValueError(
        f"rlmr.holdout={holdout} leaves no training prompts of the "
        f"{len(records)} in {files[split]}"
    )
  out_dir = os.path.join(workdir, "data", "rlmr_holdout")
  train_out = os.path.join(out_dir, f"{split}.jsonl")
  eval_out = os.path.join(out_dir, "heldout.jsonl")
  if jax.process_index() == 0 and not (
      _fresh(train_out, [files[split]]) and _fresh(eval_out, [files[split]])
  ):
    order = np.random.default_rng(config.seed).permutation(len(records))
    held = set(order[:holdout].tolist())
    jsonl.write_jsonl(eval_out, [r for i, r in enumerate(records) if i in held])
    jsonl.write_jsonl(
        train_out, [r for i, r in enumerate(records) if i not in held]
    )
  setup.sync("rlmr_holdout")
  return train_out, eval_out


# ----------------------------------------------------------------------------
# Stages.


@dataclasses.dataclass(frozen=True)
class Prompts:
  """RLMR's training prompt file and held-out evaluation records."""

  train_path: str
  eval_path: str
  eval_records: list[dict[str, Any]]


def load_prompts(
    config: ml_collections.ConfigDict, files: dict[str, str], workdir: str
) -> Prompts:
  """Training prompts and the first `rlmr_grpo.eval_prompts` held-out
  prompts that carry at least one instruction."""
  train_path, eval_path = prompt_files(
      config, files, workdir, config.rlmr.holdout
  )
  records = [
      r
      for r in jsonl.read_jsonl(eval_path, "ifeval")
      if r["instruction_id_list"]
  ][: config.rlmr_grpo.eval_prompts]
  if not records:
    raise ValueError(f"{eval_path}: no prompt with instructions to evaluate")
  return Prompts(train_path, eval_path, records)


def rlmr_stage(
    run: "jobs.Run",
    init: Any,
    writing_fn: rewards_lib.RewardFn,
    prompts: Prompts,
    sft_eval: tuple[dict[str, Any], list[str]],
    *,
    stage: str = STAGE,
    rule: str | None = None,
) -> dict[str, Any]:
  """GRPO from `init` with the mixed reward under `rule` (default
  `rlmr.rule`), then its evaluation against the SFT one (`evaluate_sft`).

  Results (settings, before, after, win_rate_vs_sft_rater) are saved to
  W/<stage>/results.json; a finished, evaluated stage is only read back.
  """
  rc = RLMRConfig.from_config(run.config.rlmr)
  if rule is not None:
    rc = dataclasses.replace(rc, mix=dataclasses.replace(rc.mix, rule=rule))
  g = run.config.rlmr_grpo
  path = os.path.join(run.workdir, stage, RESULTS)
  results = rlmr_eval.load_results(path)
  before, sft_texts = sft_eval
  results["settings"] = {
      "rule": rc.mix.rule,
      "delta": rc.mix.delta,
      "alpha": rc.mix.alpha,
      "all_violate_mode": rc.mix.all_violate_mode,
      "violation": rc.violation,
      "writing_score": rc.writing_score,
      "steps": g.steps,
      "eval_prompts": len(prompts.eval_records),
      "eval_file": prompts.eval_path,
  }
  results["before"] = before
  done = sft.stage_is_done(run.workdir, stage)
  if done and "after" in results and "win_rate_vs_sft_rater" in results:
    return results
  if done:
    params = sft.load_stage_params(
        run.workdir, stage, run.model_cfg, run.mesh, run.rules
    )
  else:
    source = setup.datasets(
        "ifeval", {g.prompt_split: prompts.train_path}, run.workdir
    )[g.prompt_split]
    trainer = grpo.GRPOTrainer(
        run.config,
        run.workdir,
        stage=stage,
        model_cfg=run.model_cfg,
        tokenizer=run.tokenizer,
        mesh=run.mesh,
        init_params=init,
        reward_components=reward_components(rc, writing_fn),
        combine_rewards=make_combine(rc.mix),
        section=g,
    )
    params = grpo.train(
        trainer,
        source,
        prompt_kind="ifeval",
        stop=run.stop,
        on_step=lambda step, roll, m: m.update(step_metrics(roll, rc)),
    )
  results["after"], texts = rlmr_eval.evaluate_policy(
      run, params, prompts.eval_records, writing_fn, "after", stage=stage
  )
  results["win_rate_vs_sft_rater"] = rlmr_eval.rater_win_rate(
      run, prompts.eval_records, texts, sft_texts
  )
  rlmr_eval.save_results(path, results)
  return results


def policy_sft_run(run: "jobs.Run") -> "jobs.Run":
  """`run` whose policy SFT data includes the constraint demonstrations
  when `rlmr.sft_include_constraints` (and SFT runs at all)."""
  if run.config.rlmr.sft_include_constraints and run.config.sft.steps:
    return dataclasses.replace(
        run, files=with_constraint_demos(run.files, run.workdir)
    )
  return run


# ----------------------------------------------------------------------------
# The job.


def rlmr_job(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Policy SFT -> eval -> GRPO with the mixed reward -> eval."""
  from rlcs_jax.trainers import jobs  # pylint: disable=g-import-not-at-top
  # (Imported here: jobs imports this module for its JOBS table.)

  rc = RLMRConfig.from_config(config.rlmr)
  run = jobs.prepare(config, workdir)
  prompts = load_prompts(config, run.files, workdir)
  run = policy_sft_run(run)
  init = jobs.policy_sft(run)
  writing_fn = WRITING_SCORERS[rc.writing_score](run, init)
  sft_eval = rlmr_eval.evaluate_sft(
      run, init, prompts.eval_records, writing_fn, stage=STAGE
  )
  results = rlmr_stage(run, init, writing_fn, prompts, sft_eval)
  if jax.process_index() == 0:
    print(
        f"RLMR ({rc.mix.rule}) on {len(prompts.eval_records)} held-out "
        "prompts:\n"
    )
    print(rlmr_eval.summary_table(results))
