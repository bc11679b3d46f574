"""RLCS stages: derived data, correctness reward, and the job end to end."""

import json
import os

import numpy as np
import pytest

from configs import rlcs_tiny
from rlcs_jax import metrics as metrics_lib
from rlcs_jax.data import jsonl
from rlcs_jax.genrm import verdict as verdict_lib
from rlcs_jax.trainers import jobs
from rlcs_jax.trainers import rewards as rewards_lib
from rlcs_jax.trainers import rlcs


def _pairs(tmp_path):
  rows = []
  for i, (label, t12, t21) in enumerate(
      [
          (1, "a\nVerdict: [[1]]", "b\nVerdict: [[2]]"),  # Consistent, correct.
          (1, "a\nVerdict: [[1]]", "b\nVerdict: [[1]]"),  # Position-biased.
          (2, "a\nVerdict: [[1]]", "b\nVerdict: [[2]]"),  # Consistent, wrong.
      ]
  ):
    rows.append(
        {
            "id": f"p{i}",
            "prompt": f"ctx {i}",
            "response_1": "ALPHA",
            "response_2": "BRAVO",
            "label": label,
            "teacher_12": t12,
            "teacher_21": t21,
        }
    )
  return jsonl.write_jsonl(str(tmp_path / "pairs.jsonl"), rows)


def test_genrm_sft_data_is_consistency_filtered(tmp_path):
  out = str(tmp_path / "sft.jsonl")
  stats = rlcs.write_genrm_sft_data(_pairs(tmp_path), out)
  rows = jsonl.read_jsonl(out, "sft")
  assert [r["id"] for r in rows] == ["p0:12", "p0:21"]
  assert stats["kept"] == 1
  # Order (2, 1) shows response_2 first.
  assert rows[1]["prompt"].index("BRAVO") < rows[1]["prompt"].index("ALPHA")


def test_judge_records_mark_correct_position(tmp_path):
  out = rlcs.write_judge_records(
      _pairs(tmp_path), str(tmp_path / "j.jsonl"), seed=0
  )
  for r in jsonl.read_jsonl(out, "contexts"):
    first_is_one = r["prompt"].index("ALPHA") < r["prompt"].index("BRAVO")
    label = {"p0": 1, "p1": 1, "p2": 2}[r["id"]]
    want = label if first_is_one else 3 - label
    assert r["context"]["correct"] == want


def test_correctness_reward():
  batch = rewards_lib.RewardBatch(
      prompts=["p"] * 3,
      completions=["x\nVerdict: [[2]]", "x\nVerdict: [[2]]", "no verdict"],
      completion_ids=[[]] * 3,
      truncated=np.zeros(3, bool),
      records=[
          {"context": {"correct": 2}},
          {"context": {"correct": 1}},
          {"context": {"correct": 1}},
      ],
      group_size=3,
  )
  r = rlcs.correctness_reward(batch)
  assert r[0] == 1.0 and r[1] == 0.0 and np.isnan(r[2])
  assert verdict_lib.parse_verdict("no verdict").status != verdict_lib.OK


# Slow (~75 s): tests/trainers/pipeline_test.py runs the same stages and
# evaluation (scalar RM, GenRM SFT/GRPO, pivot-rewarded policy GRPO).
@pytest.mark.slow
def test_rlcs_job_end_to_end(tmp_path):
  workdir = str(tmp_path / "w")
  jobs.JOBS["rlcs"](rlcs_tiny.get_config("test"), workdir)
  with open(os.path.join(workdir, "rlcs_results.json")) as f:
    res = json.load(f)
  for key in (
      "rater_ceiling",
      "genrm_sft",
      "genrm_grpo",
      "scalar_rm",
      "win_rate_rl_vs_sft_rater",
      "win_rate_rl_vs_sft_genrm",
  ):
    assert key in res, key
  w = res["win_rate_rl_vs_sft_rater"]
  assert 0 <= w["ci_low"] <= w["win_rate"] <= w["ci_high"] <= 1
  stages = {r["stage"] for r in metrics_lib.read_metrics(workdir)}
  assert {
      "sft",
      "scalar_rm",
      "genrm_sft",
      "genrm_grpo",
      "rlcs_policy",
  } <= stages
  shaped = [r for r in metrics_lib.read_metrics(workdir, "genrm_grpo")]
  assert all("shaping/accuracy" in r for r in shaped)
  policy = metrics_lib.read_metrics(workdir, "rlcs_policy")
  assert all("genrm/format_failure_rate" in r for r in policy)
