"""The `pipeline` job: both papers' small-scale reproduction in one workdir.

  python -m rlcs_jax.main --config configs/demo.py --workdir runs/demo

Stages, in order (W = the workdir). Each shows a progress bar, is skipped
when finished and resumes from its checkpoint when interrupted:

  data, tokenizer     W/data/, W/tokenizer/      StoryWorld splits, SentencePiece
  policy SFT          W/sft/          sft_train + the constraint demos
                                      (`rlmr.sft_include_constraints`), so one
                                      SFT policy starts both papers' RL
  scalar RM           W/scalar_rm/    Bradley-Terry on pairs_train: RLCS's
                                      baseline judge and RLMR's writing score
  GenRM SFT           W/genrm_sft/    teacher chains, consistency-filtered
  GenRM GRPO          W/genrm_grpo/   entropy shaping (`genrm.shaping`)
  RLCS policy GRPO    W/rlcs_policy/  GenRM pivot rewards
  RLMR policy GRPO    W/rlmr/         mixed reward (`rlmr.rule`), evaluated
                                      against the SFT policy
  RLCS evaluation     W/rlcs_results.json
  report              W/report.md, W/plots/*.png (`eval/report.py`)

With `pipeline.ablations`, further stages share the SFT policy, the GenRM
SFT and the scalar RM:

  GenRM GRPO without shaping   W/genrm_grpo_noshape/ (shaping target "none")
  RLMR baselines               W/rlmr_<rule>/ for each of
                               `pipeline.rlmr_baselines`, same GRPO budget

Evaluation results are cached key by key in W/rlcs_results.json and per
RLMR stage in W/<stage>/results.json; delete an entry (or the file) to
recompute it. W/pipeline_timings.json holds the wall and CPU time of each
stage for every invocation (a skipped stage costs the time to load its
parameters).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any, Callable

from absl import logging
import jax
import ml_collections

from rlcs_jax.eval import report
from rlcs_jax.trainers import rlcs
from rlcs_jax.trainers import rlmr
from rlcs_jax.trainers import rlmr_eval

RLCS_RESULTS = "rlcs_results.json"
TIMINGS = "pipeline_timings.json"
NOSHAPE_STAGE = "genrm_grpo_noshape"


def baseline_stage(rule: str) -> str:
  """Workdir folder (and metrics stage) of an RLMR baseline."""
  return f"{rlmr.STAGE}_{rule}"


class StageTimer:
  """Wall time (and this process's CPU time, all threads) per stage of this
  invocation, appended to W/TIMINGS."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, TIMINGS)
    self.stages: dict[str, float] = {}
    self.cpu: dict[str, float] = {}
    self.start = time.time()

  @contextlib.contextmanager
  def __call__(self, stage: str):
    t0, c0 = time.perf_counter(), time.process_time()
    yield
    self.stages[stage] = round(time.perf_counter() - t0, 2)
    self.cpu[stage] = round(time.process_time() - c0, 2)
    self._save()

  def _save(self) -> None:
    if jax.process_index() != 0:
      return
    runs = []
    if os.path.exists(self.path):
      with open(self.path) as f:
        runs = json.load(f)
    runs = [r for r in runs if r.get("started") != self.start]
    runs.append(
        {"started": self.start, "stages": self.stages, "cpu_seconds": self.cpu}
    )
    with open(self.path + ".tmp", "w") as f:
      json.dump(runs, f, indent=2)
    os.replace(self.path + ".tmp", self.path)


class CachedResults:
  """A results JSON file filled key by key; each key computed only once."""

  def __init__(self, path: str):
    self.path = path
    self.data = rlmr_eval.load_results(path)

  def get(self, key: str, fn: Callable[[], Any]) -> Any:
    if key not in self.data:
      logging.info("evaluating %s", key)
      self.data[key] = fn()
      self.save()
    return self.data[key]

  def update(self, fn: Callable[[], dict[str, Any]], *keys: str) -> None:
    """Computes several keys with one call unless all are present."""
    if not all(k in self.data for k in keys):
      self.data.update(fn())
      self.save()

  def save(self) -> None:
    rlmr_eval.save_results(self.path, self.data)


def evaluate_rlcs(
    run, params: dict[str, Any], results: CachedResults
) -> dict[str, Any]:
  """RLCS numbers of the stages in `params` (missing ones only)."""
  results.get("rater_ceiling", lambda: rlcs.rater_ceiling(run))
  for name in ("genrm_sft", "genrm_grpo", NOSHAPE_STAGE):
    if name in params:
      results.get(name, lambda p=params[name]: rlcs.genrm_agreement(run, p))
  results.get(
      "scalar_rm", lambda: rlcs.scalar_rm_agreement(run, params["scalar_rm"])
  )
  results.update(
      lambda: rlcs.policy_win_rates(
          run, params["sft"], params["rlcs_policy"], params["genrm_grpo"]
      ),
      "win_rate_rl_vs_sft_rater",
      "win_rate_rl_vs_sft_genrm",
  )
  shaping = run.config.genrm.shaping
  results.data["settings"] = {
      "shaping_target": shaping.target,
      "lambda_min": shaping.lambda_min,
      "entropy_source": shaping.entropy_source,
      "pivot_mode": run.config.genrm.pivot_mode,
      "genrm_grpo_steps": run.config.genrm_grpo.steps,
      "rlcs_grpo_steps": run.config.rlcs_grpo.steps,
  }
  results.data["reward_variance"] = {
      stage: rlcs.reward_variance(run.workdir, stage)
      for stage in ("genrm_grpo", NOSHAPE_STAGE)
      if stage in params
  }
  results.save()
  return results.data


def pipeline_job(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Data -> ... -> RLCS and RLMR policies -> evaluation -> report.md."""
  from rlcs_jax.trainers import jobs  # pylint: disable=g-import-not-at-top
  # (Imported here: jobs imports this module for its JOBS table.)

  rc = rlmr.RLMRConfig.from_config(config.rlmr)  # Validate before any work.
  for rule in config.pipeline.rlmr_baselines:
    rlmr.RLMRConfig.from_config(_with_rule(config.rlmr, rule))
  timer = StageTimer(workdir)
  with timer("prepare"):
    run = jobs.prepare(config, workdir)
    prompts = rlmr.load_prompts(config, run.files, workdir)
    run = rlmr.policy_sft_run(run)
  params = {}
  with timer("sft"):
    params["sft"] = jobs.policy_sft(run)
  with timer("scalar_rm"):
    params["scalar_rm"] = rlcs.scalar_rm(run, params["sft"])
  with timer("genrm_sft"):
    params["genrm_sft"] = rlcs.genrm_sft(run, params["sft"])
  with timer("genrm_grpo"):
    params["genrm_grpo"] = rlcs.genrm_grpo(run, params["genrm_sft"])
  with timer("rlcs_policy"):
    params["rlcs_policy"] = rlcs.policy_grpo(
        run, params["sft"], params["genrm_grpo"]
    )
  with timer("rlmr_eval_sft"):
    writing_fn = rlmr.WRITING_SCORERS[rc.writing_score](run, params["sft"])
    sft_eval = rlmr_eval.evaluate_sft(
        run, params["sft"], prompts.eval_records, writing_fn, stage=rlmr.STAGE
    )
  with timer("rlmr"):
    rlmr.rlmr_stage(run, params["sft"], writing_fn, prompts, sft_eval)
  results = CachedResults(os.path.join(workdir, RLCS_RESULTS))
  with timer("rlcs_eval"):
    evaluate_rlcs(run, params, results)
  if config.pipeline.ablations:
    if jax.process_index() == 0:  # The main results, should ablations stop.
      report.write_report(workdir)
    with timer(NOSHAPE_STAGE):
      params[NOSHAPE_STAGE] = rlcs.genrm_grpo(
          run,
          params["genrm_sft"],
          stage=NOSHAPE_STAGE,
          shaping=rlcs.no_shaping(config),
      )
    for rule in config.pipeline.rlmr_baselines:
      stage = baseline_stage(rule)
      with timer(stage):
        rlmr.rlmr_stage(
            run,
            params["sft"],
            writing_fn,
            prompts,
            sft_eval,
            stage=stage,
            rule=rule,
        )
    with timer("ablation_eval"):
      evaluate_rlcs(run, params, results)
  if jax.process_index() == 0:
    with timer("report"):
      path = report.write_report(workdir)
    with open(path, encoding="utf-8") as f:
      print(f.read())


def _with_rule(section: ml_collections.ConfigDict, rule: str):
  out = section.copy_and_resolve_references()
  out.rule = rule
  return out
