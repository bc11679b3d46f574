"""experiments/bench.py: a --quick run of every section (ours only) is complete.

A smoke test, not a timing assertion: our side of each section runs in
process on the unit-test model (no torch), and the result has every key the
table and the targets read, with positive numbers. The table renders, and
the worker protocol turns a failure into a result.
"""

import json
import math

from experiments import bench
from experiments import bench_setup
from experiments import bench_table


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
