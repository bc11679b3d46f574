"""experiments/bench.py: a --quick run of every section (ours only) is complete.

A smoke test, not a timing assertion: our side of each section runs in
process on the unit-test model (no torch), and the result has every key the
table and the targets read, with positive numbers. The table renders, and
the worker protocol turns a failure into a result. The decode and GRPO
rooflines' formulas and their wiring into ceilings and targets are checked
on hand-made numbers.
"""

import json
import math

import pytest

from experiments import bench
from experiments import bench_roofline
from experiments import bench_setup
from experiments import bench_table
from experiments import bench_targets
from rlcs_jax.model.config import PRESETS


def _positive(x):
  return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_quick_run_reports_every_section():
  result = bench.run(
      quick=True,
      models=["test"],
      baselines=False,
      in_process=True,
      log=lambda s: None,
  )
  st = bench_setup.settings(True, ["test"])
  json.dumps(result)  # One JSON object.
  assert result["meta"]["quick"] and result["skipped"]["baselines"]

  decode = result["decode"]["test"]
  assert decode["hf"] is None and "error" not in decode["ours"]
  for b in st.decode_batches:
    row = decode["ours"][str(b)]
    for key in ("tokens_per_s", "total_s", "prefill_s", "decode_tokens_per_s"):
      assert _positive(row[key]), (b, key, row)
    assert row["compile_s"] >= 0
  assert _positive(decode["ours"]["peak_rss_mb"])
  roof = decode["ours"]["roofline"]
  for key in (
      "matmul_flops_per_s",
      "read_bytes_per_s",
      "matmul_params",
      "head_params",
      "weight_bytes",
  ):
    assert _positive(roof[key]), (key, roof)
  assert roof["weight_bytes"] == 4 * roof["matmul_params"]
  test_cfg = PRESETS["test"]
  kv_per_token = 2 * (
      test_cfg["num_layers"] * test_cfg["num_kv_heads"] * test_cfg["head_dim"]
  )
  assert roof["kv_bytes_per_slot"] == 4 * kv_per_token
  assert roof["read_bytes_per_s"] == max(
      roof["read_bytes_per_s_by_pattern"].values()
  )
  for b in st.decode_batches:
    # No HF time, no ceiling. The roofline time is a lower bound only as
    # far as the measured rates are true maxima (a loaded machine measures
    # them low), hence the slack above 1.
    assert decode["ceiling"][str(b)] is None
    assert 0 < decode["ours_vs_roofline"][str(b)] <= 1.5, decode

  # One train and one GRPO entry per compute dtype (float32 keeps the bare
  # model name).
  assert (
      sorted(result["train"])
      == sorted(result["grpo"])
      == [
          "test",
          "test bf16",
      ]
  )
  keys = {
      "train": (
          "step_s",
          "tokens_per_s",
          "model_flops_per_s",
          "matmul_flops_per_s",
          "mfu_vs_matmul",
          "peak_rss_mb",
      ),
      "grpo": (
          "generate_s",
          "reference_s",
          "update_s",
          "step_s",
          "peak_rss_mb",
      ),
  }
  for name in ("test", "test bf16"):
    for section, section_keys in keys.items():
      ours = result[section][name]["ours"]
      for key in section_keys:
        assert _positive(ours[key]), (section, name, key, ours)
    grpo = result["grpo"][name]["ours"]
    assert grpo["reward_s"] >= 0 and math.isfinite(grpo["loss"])
    # The GRPO roofline: rates in the step's compute dtype, one prompt
    # count per group, no TRL run hence no ceiling.
    roof = grpo["roofline"]
    itemsize = 2 if name.endswith("bf16") else 4
    assert roof["weight_bytes"] == itemsize * roof["matmul_params"]
    assert roof["kv_bytes_per_slot"] == itemsize * kv_per_token
    assert len(roof["prompt_tokens"]) == st.grpo_prompts
    assert all(_positive(n) for n in roof["prompt_tokens"])
    entry = result["grpo"][name]
    assert entry["ceiling"] is None
    assert all(_positive(v) for v in entry["roofline"].values())
    # Slack above 1 as for decode: a loaded machine measures rates low.
    assert 0 < entry["ours_vs_roofline"] <= 1.5, entry

  scaling = result["scaling"]
  dec = scaling["decode"]["test"]
  # Per-token decode time is (generate - prefill) / T: with the quick
  # settings' 8-16 tokens, noise on a loaded machine can make it <= 0.
  for t in st.scaling_new:
    assert math.isfinite(dec[str(t)]["ms_per_token"])
  assert isinstance(dec["max_over_min"], float)
  for length in st.scaling_seqs:
    assert _positive(scaling["train"]["test"][str(length)]["tokens_per_s"])

  # Without baselines there are no ratios, so only our own targets appear.
  assert all("ours/" not in t["target"] for t in result["targets"])
  text = bench_table.table(result)
  for heading in ("DECODE", "TRAIN STEP", "GRPO STEP", "SCALING"):
    assert heading in text
  assert " ceiling " in text and "test     roofline rates: f32 matmul" in text
  assert "test bf16    roofline: step " in text


def test_decode_roofline_on_hand_made_numbers():
  # 1000 matmul parameters (100 of them the head), 4000 bytes, B=2, P=10,
  # T=5, 1 MFLOP/s. Prefill: 2 * 2 * (900 * 10 + 100) = 36400 FLOPs =
  # 0.0364 s; a step: 2 * 2 * 1000 = 4000 FLOPs = 0.004 s; T - 1 steps.
  shape = dict(
      matmul_params=1000,
      head_params=100,
      weight_bytes=4000,
      batch=2,
      prompt=10,
      new=5,
      flops_per_s=1e6,
  )
  # Compute-bound throughout.
  assert bench_roofline.decode_roofline(
      **shape, bytes_per_s=1e12
  ) == pytest.approx(0.0364 + 4 * 0.004)
  # Steps read-bound (0.008 s per read of the weights), prefill not.
  assert bench_roofline.decode_roofline(
      **shape, bytes_per_s=5e5
  ) == pytest.approx(0.0364 + 4 * 0.008)
  # Read-bound throughout: one read of the weights per forward pass.
  assert bench_roofline.decode_roofline(
      **shape, bytes_per_s=1e4
  ) == pytest.approx(5 * 0.4)
  # With the KV cache, 10 bytes a token: the t-th step (t = 0..3) also
  # reads both rows' 10 + t earlier tokens, (200 + 20 t) / 1e4 s.
  assert bench_roofline.decode_roofline(
      **shape, bytes_per_s=1e4, kv_bytes_per_slot=10
  ) == pytest.approx(5 * 0.4 + 4 * 0.02 + 0.002 * (0 + 1 + 2 + 3))

  st = bench_setup.settings(True, ["test"])
  b = str(st.decode_batches[0])
  entry = {
      "ours": {
          b: {"total_s": 4.0},
          "roofline": {
              "matmul_flops_per_s": 1e9,
              "read_bytes_per_s": 1e9,
              "matmul_params": 10**6,
              "head_params": 0,
              "weight_bytes": 4e6,
          },
      },
      "hf": {b: {"tokens_per_s": int(b) * st.decode_new / 8.0}},
      "ratio": {b: 2.0},
  }
  bench_roofline.add_decode_ceilings(entry, st)
  t_min = bench_roofline.decode_roofline(
      matmul_params=10**6,
      head_params=0,
      weight_bytes=4e6,
      batch=int(b),
      prompt=st.decode_prompt,
      new=st.decode_new,
      flops_per_s=1e9,
      bytes_per_s=1e9,
  )
  assert entry["ceiling"][b] == pytest.approx(8.0 / t_min)
  assert entry["ours_vs_roofline"][b] == pytest.approx(t_min / 4.0)

  # The decode ratio targets carry the ceiling; others do not.
  checks = bench_targets.check(
      {
          "decode": {"tiny": {"ratio": {"1": 2.0}, "ceiling": {"1": 1.5}}},
          "scaling": {"decode": {"tiny": {"max_over_min": 1.1}}},
      }
  )
  by_name = {t["target"]: t for t in checks}
  assert by_name["decode tiny b1 ours/HF"]["ceiling"] == 1.5
  assert "ceiling" not in by_name["decode ms/token max/min tiny"]


def test_grpo_roofline_on_hand_made_numbers():
  # 1000 matmul parameters (100 of them the head), 4000 bytes, two groups
  # of 2 rows with 3- and 5-token prompts, 4 new tokens, 1 MFLOP/s.
  shape = dict(
      matmul_params=1000,
      head_params=100,
      weight_bytes=4000,
      prompt_tokens=[3, 5],
      group=2,
      new=4,
      reference=True,
      flops_per_s=1e6,
  )
  # Compute-bound. Generation: a prefill of the 8 prompt tokens through the
  # body plus the head at 2 last positions, 2 * (900 * 8 + 100 * 2) =
  # 14800 FLOPs, then 3 steps of 4 rows, 2 * 4 * 1000 = 8000 each: 38800.
  # Scoring: the body over the prompts and 4 rows x 3 fed completion
  # tokens, the head at the 2 prompts' last positions and those 12 tokens,
  # 2 * (900 * 20 + 100 * 14) = 38800 FLOPs; the update's backward pass
  # twice that. The step: generation and reference overlapped, then the
  # update.
  t = bench_roofline.grpo_roofline(**shape, bytes_per_s=1e12)
  assert t["generate_s"] == pytest.approx(0.0148 + 3 * 0.008)
  assert t["reference_s"] == pytest.approx(0.0388)
  assert t["update_s"] == pytest.approx(2 * 0.0388)
  assert t["step_s"] == pytest.approx(4 * 0.0388)
  # Read-bound: one read of the weights (0.4 s) per pass; generation's 4
  # passes and the reference pass's one before the update's one.
  t = bench_roofline.grpo_roofline(**shape, bytes_per_s=1e4)
  assert t["generate_s"] == pytest.approx(4 * 0.4)
  assert t["step_s"] == pytest.approx(6 * 0.4)
  # With the KV cache, 10 bytes a token: the t-th step (t = 0..2) reads
  # the 8 prompt tokens (each group's once) and 4 rows x t completion
  # tokens, (80 + 40 t) / 1e4 s, in generation and in the step.
  t = bench_roofline.grpo_roofline(
      **shape, bytes_per_s=1e4, kv_bytes_per_slot=10
  )
  assert t["generate_s"] == pytest.approx(4 * 0.4 + 0.008 + 0.012 + 0.016)
  assert t["reference_s"] == pytest.approx(0.4)
  assert t["step_s"] == pytest.approx(6 * 0.4 + 0.036)
  # Generation read-bound (0.02 s a pass), the reference pass not: its
  # FLOPs fit in generation's reads, so the step is less than the phases'
  # sum (0.08 + 0.0388 + 0.0776).
  t = bench_roofline.grpo_roofline(**shape, bytes_per_s=2e5)
  assert t["generate_s"] == pytest.approx(4 * 0.02)
  assert t["step_s"] == pytest.approx(5 * 0.02 + 2 * 0.0388)
  # Without a KL term there is no reference pass.
  shape["reference"] = False
  t = bench_roofline.grpo_roofline(**shape, bytes_per_s=1e12)
  assert t["reference_s"] == 0.0
  assert t["step_s"] == pytest.approx(3 * 0.0388)

  roof = dict(shape, matmul_flops_per_s=1e6, read_bytes_per_s=1e12)
  entry = {
      "ours": {"step_s": 0.5, "roofline": roof},
      "trl": {"step_s": 1.5},
      "ratio": 3.0,
  }
  bench_roofline.add_grpo_ceiling(entry)
  step_min = 3 * 0.0388
  assert entry["roofline"]["step_s"] == pytest.approx(step_min)
  assert entry["ceiling"] == pytest.approx(1.5 / step_min)
  assert entry["ours_vs_roofline"] == pytest.approx(step_min / 0.5)
  checks = bench_targets.check({"grpo": {"smollm2": entry}})
  assert checks[0]["target"] == "grpo smollm2 ours/TRL"
  assert checks[0]["ceiling"] == pytest.approx(1.5 / step_min)


def test_worker_reports_errors_as_results(capsys):
  job = {
      "framework": "ours",
      "section": "decode",
      "model": "no_such_model",
      "quick": True,
  }
  assert bench._worker_main(json.dumps(job)) == 0
  line = capsys.readouterr().out.strip().splitlines()[-1]
  assert line.startswith("BENCH_RESULT ")
  error = json.loads(line[len("BENCH_RESULT ") :])["error"]
  assert "unknown benchmark model" in error
