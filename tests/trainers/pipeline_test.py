"""The pipeline job end to end (configs/demo.py:test) and the paper tables.

One workdir for the module: the pipeline runs once; the rerun test and the
paper-tables test (which adds the ablation stages) build on it, as a user
would (`make demo`, then `experiments.paper_tables` on the same workdir).
"""

import json
import os
import shutil

import pytest

from configs import demo
from experiments import paper_tables
from rlcs_jax import metrics as metrics_lib
from rlcs_jax.trainers import jobs
from rlcs_jax.trainers import pipeline

_PNG = b"\x89PNG\r\n\x1a\n"
MAIN_STAGES = (
    "sft",
    "scalar_rm",
    "genrm_sft",
    "genrm_grpo",
    "rlcs_policy",
    "rlmr",
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("pipeline") / "run")
  jobs.JOBS["pipeline"](demo.get_config("test"), wd)
  return wd


def _json(*path):
  with open(os.path.join(*path)) as f:
    return json.load(f)


def _metric_lines(wd):
  with open(os.path.join(wd, "metrics.jsonl")) as f:
    return f.read().splitlines()


def _final_params_mtimes(wd, stages):
  return {
      s: os.path.getmtime(os.path.join(wd, s, "final_params")) for s in stages
  }


def test_pipeline_writes_report_tables_and_plots(workdir):
  with open(os.path.join(workdir, "report.md")) as f:
    text = f.read()
  for needle in (
      "## RLCS",
      "| rater ceiling",
      "GenRM-SFT agreement",
      "GenRM SFT+GRPO agreement, shaping target=reward",
      "scalar BT RM agreement",
      "RL policy vs SFT, judged by the hidden rater",
      "72.4%",  # The papers' numbers beside ours.
      "## RLMR",
      "constraint prompt strict acc. [95% CI]",
      "| SFT start | 0 |",
      "| rlmr | 2 |",
      "86.65%",
      "## Wall time per stage",
  ):
    assert needle in text, needle
  plots = [
      line[line.index("(") + 1 : -1]
      for line in text.splitlines()
      if line.startswith("![")
  ]
  for name in (
      "genrm_grpo_curves.png",
      "rlcs_policy_curves.png",
      "rlmr_curves.png",
      "rlmr_constraints.png",
      "genrm_agreement.png",
      "genrm_reward_variance.png",
      "rlmr_comparison.png",
  ):
    assert f"plots/{name}" in plots, name
  for rel in plots:
    with open(os.path.join(workdir, rel), "rb") as f:
      assert f.read(8) == _PNG, rel

  rlcs = _json(workdir, pipeline.RLCS_RESULTS)
  for key in (
      "rater_ceiling",
      "genrm_sft",
      "genrm_grpo",
      "scalar_rm",
      "win_rate_rl_vs_sft_rater",
      "win_rate_rl_vs_sft_genrm",
  ):
    assert key in rlcs, key
  assert rlcs["reward_variance"]["genrm_grpo"]["steps"] == 2
  rlmr = _json(workdir, "rlmr", "results.json")
  win = rlmr["win_rate_vs_sft_rater"]  # StoryWorld prompts carry a context.
  assert 0 <= win["ci_low"] <= win["win_rate"] <= win["ci_high"] <= 1
  assert win["n"] == 4
  low, high = rlmr["after"]["prompt_strict_ci"]
  assert low <= rlmr["after"]["prompt_strict"] <= high
  stages = {r["stage"] for r in metrics_lib.read_metrics(workdir)}
  assert set(MAIN_STAGES) <= stages
  for row in metrics_lib.read_metrics(workdir, "genrm_grpo"):
    assert "shaping/reward_group_var" in row and "shaping/reward_var" in row
  # One SFT policy serves both papers: its data includes the constraint demos.
  assert os.path.exists(os.path.join(workdir, "data", "rlmr_sft_train.jsonl"))


def test_rerun_skips_finished_stages_and_resumes_a_killed_one(workdir):
  lines = _metric_lines(workdir)
  done = [s for s in MAIN_STAGES if s != "rlmr"]
  mtimes = _final_params_mtimes(workdir, done)
  # "Kill" the RLMR stage after its step-1 checkpoint: no final parameters,
  # no step-2 checkpoint, no evaluation of the trained policy.
  shutil.rmtree(os.path.join(workdir, "rlmr", "final_params"))
  shutil.rmtree(os.path.join(workdir, "rlmr", "checkpoints", "2"))
  results = _json(workdir, "rlmr", "results.json")
  del results["after"]
  with open(os.path.join(workdir, "rlmr", "results.json"), "w") as f:
    json.dump(results, f)

  jobs.JOBS["pipeline"](demo.get_config("test"), workdir)

  new = _metric_lines(workdir)[len(lines) :]
  assert [(json.loads(r)["stage"], json.loads(r)["step"]) for r in new] == [
      ("rlmr", 2)
  ]  # Only the lost step was trained again; everything else was skipped.
  assert _final_params_mtimes(workdir, done) == mtimes
  assert os.path.exists(os.path.join(workdir, "rlmr", "final_params"))
  assert "after" in _json(workdir, "rlmr", "results.json")
  runs = _json(workdir, pipeline.TIMINGS)
  assert len(runs) == 2 and "rlmr" in runs[-1]["stages"]


def test_paper_tables_adds_the_ablations(workdir):
  lines = _metric_lines(workdir)
  text = paper_tables.run(demo.get_config("test"), workdir)
  with open(os.path.join(workdir, paper_tables.TABLES_FILE)) as f:
    assert f.read() == text
  rlcs, rlmr = text.split("## RLMR")
  for needle in (
      "rater ceiling",
      "GenRM-SFT agreement",
      "GenRM SFT+GRPO agreement, shaping target=reward",
      "GenRM SFT+GRPO agreement, no shaping",
      "scalar BT RM agreement",
      "RL policy vs SFT, judged by the hidden rater",
      "GenRM GRPO reward variance, shaping=reward",
      "GenRM GRPO reward variance, no shaping",
      "72.4%",
  ):
    assert needle in rlcs, needle
  rows = [l.split(" | ")[0] for l in rlmr.splitlines() if l.startswith("| ")]
  assert rows[2:] == [
      "| SFT start",
      "| single_writing",
      "| single_constraint",
      "| fixed_mix",
      "| rlmr",
  ]
  assert "86.65%" in rlmr and "72.75%" in rlmr
  # Reused: only the ablation stages trained.
  new = {json.loads(r)["stage"] for r in _metric_lines(workdir)[len(lines) :]}
  assert new == {
      "genrm_grpo_noshape",
      "rlmr_single_writing",
      "rlmr_single_constraint",
      "rlmr_fixed_mix",
  }
  variance = _json(workdir, pipeline.RLCS_RESULTS)["reward_variance"]
  assert set(variance) == {"genrm_grpo", "genrm_grpo_noshape"}
  for rule in ("single_writing", "single_constraint", "fixed_mix"):
    res = _json(workdir, pipeline.baseline_stage(rule), "results.json")
    assert res["settings"]["rule"] == rule
    assert res["settings"]["steps"] == 2  # The RLMR budget.
    assert "win_rate" in res["win_rate_vs_sft_rater"]
