"""report.py tables on hand-made results files (no training)."""

import json
import os

from rlcs_jax.eval import report


def _eval(strict, ci, instr, writing, n=64):
  return {
      "prompt_strict": strict,
      "prompt_strict_ci": ci,
      "instruction_strict": instr,
      "writing_mean": writing,
      "response_length": 60.0,
      "num_prompts": n,
  }


def _win(rate, low, high, n=64):
  return {"win_rate": rate, "ci_low": low, "ci_high": high, "n": n}


def _write(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f)


SFT = _eval(0.25, [0.16, 0.37], 0.5, 0.1)


def _rlmr_workdir(tmp_path):
  wd = str(tmp_path)
  for stage, rule, after, win in (
      (
          "rlmr",
          "rlmr",
          _eval(0.5, [0.38, 0.62], 0.7, 0.3),
          _win(0.625, 0.5, 0.73),
      ),
      (
          "rlmr_fixed_mix",
          "fixed_mix",
          _eval(0.375, [0.27, 0.5], 0.6, 0.2),
          _win(0.5, 0.38, 0.62),
      ),
      (
          "rlmr_single_writing",
          "single_writing",
          _eval(0.2, [0.12, 0.31], 0.45, 0.4),
          {"skipped": "no StoryWorld context on the prompts (no rater)"},
      ),
  ):
    _write(
        os.path.join(wd, stage, "results.json"),
        {
            "settings": {"rule": rule, "steps": 12},
            "before": SFT,
            "after": after,
            "win_rate_vs_sft_rater": win,
        },
    )
  return wd


def test_rlmr_table_rows_and_cells(tmp_path):
  wd = _rlmr_workdir(tmp_path)
  os.makedirs(os.path.join(wd, "rlmr_floor"))  # No results: not a row.
  variants = report.rlmr_variants(wd)
  assert [n for n, _ in variants] == [
      "sft",
      "single_writing",
      "fixed_mix",
      "rlmr",
  ]
  lines = report.rlmr_table(variants).splitlines()
  assert lines[0].startswith("| policy | GRPO steps | constraint prompt")
  assert lines[2] == (
      "| SFT start | 0 | 25.0% [16.0%, 37.0%] (n=64) | 50.0% | 0.100 | - | "
      "IFEval 83.36% (start) |"
  )
  assert lines[3] == (
      "| single_writing | 12 | 20.0% [12.0%, 31.0%] (n=64) | 45.0% | 0.400 | "
      "n/a (no StoryWorld context on the prompts (no rater)) | - |"
  )
  assert lines[4] == (
      "| fixed_mix | 12 | 37.5% [27.0%, 50.0%] (n=64) | 60.0% | 0.200 | "
      "50.0% [38.0%, 62.0%] (n=64) | - |"
  )
  assert lines[5] == (
      "| rlmr | 12 | 50.0% [38.0%, 62.0%] (n=64) | 70.0% | 0.300 | "
      "62.5% [50.0%, 73.0%] (n=64) | IFEval 86.65%; win rate 72.75% |"
  )


def test_write_report_renders_tables_not_json(tmp_path):
  wd = _rlmr_workdir(tmp_path)
  _write(
      os.path.join(wd, "rlcs_results.json"),
      {
          "rater_ceiling": 0.86,
          "genrm_sft": {"accuracy": 0.6, "consistent_correct": 0.4, "n": 100},
          "genrm_grpo": {"accuracy": 0.65, "consistent_correct": 0.5, "n": 100},
          "genrm_grpo_noshape": {"accuracy": 0.62, "n": 100},
          "win_rate_rl_vs_sft_rater": _win(0.55, 0.43, 0.67),
          "reward_variance": {
              "genrm_grpo": {
                  "steps": 12,
                  "reward_var": 0.5,
                  "reward_group_var": 0.25,
              },
              "genrm_grpo_noshape": {
                  "steps": 12,
                  "reward_var": 0.9,
                  "reward_group_var": 0.5,
              },
          },
      },
  )
  with open(report.write_report(wd)) as f:
    text = f.read()
  assert "```json" not in text
  assert "| rlmr | 12 | 50.0% [38.0%, 62.0%]" in text
  assert (
      "| rater ceiling (noise-free rater vs noisy labels) | 86.0% | - |" in text
  )
  assert (
      "| RL policy vs SFT, judged by the hidden rater | 55.0% [43.0%, 67.0%]"
      " (n=64) | 72.4% (RLCS policy vs SFT, at scale) |" in text
  )
  assert (
      "GenRM SFT+GRPO agreement, no shaping (avg of both orders) | 62.0%"
      in (text)
  )
  assert (
      "| GenRM GRPO reward variance, no shaping | 0.500 within groups, 0.900 "
      "over the batch (12 steps) | - |" in text
  )
  assert "scalar BT RM" not in text  # Absent results are left out.
  for png in ("rlmr_comparison.png", "genrm_agreement.png"):
    assert f"(plots/{png})" in text
    assert os.path.getsize(os.path.join(wd, "plots", png)) > 0


def test_samples_section_quotes_newest_file(tmp_path):
  wd = str(tmp_path)
  assert report.samples_section(wd) == ""  # No SFT stage: no section.
  os.makedirs(os.path.join(wd, "sft"))
  for step, word in ((50, "old"), (300, "new")):
    with open(os.path.join(wd, "sft", f"samples_{step}.txt"), "w") as f:
      for i in range(3):
        f.write(
            f"=== PROMPT\nline a\nline b\nOutline {i}\n"
            f"=== CONTINUATION\nMira {word} story {i}.\n\n"
        )
  text = report.samples_section(wd)
  assert "sft/samples_300.txt" in text
  assert "Mira new story 0." in text and "Mira new story 1." in text
  assert "story 2" not in text and "old" not in text
  assert "> line b\n> Outline 0" in text
  with open(report.write_report(wd)) as f:
    assert "## Sample continuations (SFT policy)" in f.read()
