"""`report.md` and PNG plots of a run, from its metrics.jsonl and results.

Everything shown is read back from files the stages wrote, so the report can
be regenerated at any time: `python -m rlcs_jax.eval.report WORKDIR`.

Inputs (whichever exist):
  metrics.jsonl             per-step metrics of every stage (curves)
  rlcs_results.json         RLCS evaluation (`trainers/rlcs.py`,
                            `trainers/pipeline.py`)
  rlmr/results.json and rlmr_<rule>/results.json
                            RLMR and its baselines (`trainers/rlmr_eval.py`)
  grpo/results.json         the verifiable-reward GRPO job
  pipeline_timings.json     wall time per stage (`trainers/pipeline.py`)
  sft/samples_<step>.txt    the SFT policy's sample continuations (the
                            newest file's first few are quoted)

`rlcs_table` and `rlmr_table` render the two papers' tables with the
papers' headline numbers beside ours; `experiments/paper_tables.py` uses the
same functions.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from rlcs_jax import metrics as metrics_lib

CURVES = (
    ("reward_mean", "reward"),
    ("kl", "KL to reference"),
    ("entropy", "token entropy"),
    ("clip_frac", "clip fraction"),
    ("response_length", "response length (tokens)"),
)
# Headline numbers quoted from the papers' abstracts / the issues.
PAPER = {
    "genrm_agreement": "68% (GenRM vs human creativity judgements)",
    "rlcs_win_rate": "72.4% (RLCS policy vs SFT, at scale)",
    "rlmr_ifeval": "83.36% -> 86.65% (IFEval, 8B-72B)",
    "rlmr_win_rate": "72.75% (expert win rate)",
}
# RLMR rows: the SFT start, the baselines in this order, then RLMR itself.
RLMR_ORDER = ("single_writing", "single_constraint", "fixed_mix", "floor")
RLMR_PAPER = {
    "sft": "IFEval 83.36% (start)",
    "rlmr": "IFEval 86.65%; win rate 72.75%",
}
GENRM_STAGES = ("genrm_grpo", "genrm_grpo_noshape")


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
  xs, ys = [], []
  for r in rows:
    v = r.get(key)
    if isinstance(v, (int, float)) and math.isfinite(v):
      xs.append(r["step"])
      ys.append(v)
  return xs, ys


def _savefig(fig, workdir: str, name: str) -> str:
  path = os.path.join(workdir, "plots", name)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def rl_stages(rows: list[dict]) -> list[str]:
  """Stages with GRPO rows (`reward_mean`), in order of appearance."""
  out = []
  for r in rows:
    if "reward_mean" in r and r.get("stage") not in out:
      out.append(r.get("stage"))
  return out


def plot_stage(workdir: str, stage: str, rows: list[dict]) -> str | None:
  """One PNG per RL stage with the standard curves; None if no data."""
  rows = [r for r in rows if "reward_mean" in r]
  if not rows:
    return None
  fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.2))
  for ax, (key, label) in zip(axes, CURVES):
    xs, ys = _series(rows, key)
    ax.plot(xs, ys, marker=".", lw=1)
    ax.set_title(label)
    ax.set_xlabel("step")
    if not xs:
      ax.text(0.5, 0.5, "not logged", ha="center", transform=ax.transAxes)
  fig.suptitle(stage)
  return _savefig(fig, workdir, f"{stage}_curves.png")


def plot_constraints(workdir: str, stage: str, rows: list[dict]) -> str | None:
  """Pass rate per instruction type over steps (`constraint/<id>` keys)."""
  keys = sorted({k for r in rows for k in r if k.startswith("constraint/")})
  keys = [k for k in keys if k != "constraint/constrained_frac"]
  if not keys:
    return None
  fig, ax = plt.subplots(figsize=(8, 4))
  for k in keys:
    xs, ys = _series(rows, k)
    ax.plot(xs, ys, lw=1, label=k.split("/", 1)[1])
  ax.set_xlabel("step")
  ax.set_ylabel("pass rate")
  ax.set_title(f"{stage}: constraint pass rate per instruction type")
  ax.legend(fontsize=6, ncol=2)
  return _savefig(fig, workdir, f"{stage}_constraints.png")


def plot_agreement(workdir: str, rlcs: dict[str, Any]) -> str | None:
  """Held-out agreement of each judge, with the rater ceiling."""
  names = [
      n
      for n in ("genrm_sft", "genrm_grpo", "genrm_grpo_noshape", "scalar_rm")
      if n in rlcs
  ]
  if not names:
    return None
  fig, ax = plt.subplots(figsize=(6, 3.4))
  vals = [rlcs[n]["accuracy"] for n in names]
  colors = {"genrm_sft": "#999", "genrm_grpo": "#37c"}
  ax.bar(names, vals, color=[colors.get(n, "#7a5") for n in names])
  if "rater_ceiling" in rlcs:
    ax.axhline(rlcs["rater_ceiling"], ls="--", c="k", label="rater ceiling")
    ax.legend()
  ax.set_ylim(0, 1)
  ax.set_ylabel("agreement with held-out labels")
  ax.set_title("Judges: GenRM before/after GRPO, scalar RM")
  ax.tick_params(axis="x", labelsize=7)
  return _savefig(fig, workdir, "genrm_agreement.png")


def plot_reward_variance(workdir: str, rows: list[dict]) -> str | None:
  """Within-group reward variance per step of the GenRM GRPO stages."""
  series = {
      s: _series(
          [r for r in rows if r.get("stage") == s], "shaping/reward_group_var"
      )
      for s in GENRM_STAGES
  }
  series = {s: xy for s, xy in series.items() if xy[0]}
  if not series:
    return None
  fig, ax = plt.subplots(figsize=(6, 3.4))
  for s, (xs, ys) in series.items():
    ax.plot(xs, ys, marker=".", lw=1, label=s)
  ax.set_xlabel("step")
  ax.set_ylabel("mean within-group variance")
  ax.set_title("GenRM GRPO reward variance")
  ax.legend()
  return _savefig(fig, workdir, "genrm_reward_variance.png")


def plot_rlmr(workdir: str, variants: list[tuple[str, dict]]) -> str | None:
  """Constraint accuracy and rater win rate vs SFT of each RLMR variant."""
  if not variants:
    return None
  names = [n for n, _ in variants]
  acc = [_num(v.get("prompt_strict")) for _, v in variants]
  win = [_num((v.get("win") or {}).get("win_rate")) for _, v in variants]
  xs = range(len(names))
  fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 3.4))
  ax.bar([x - 0.2 for x in xs], acc, 0.4, label="constraint prompt strict acc")
  ax.bar([x + 0.2 for x in xs], win, 0.4, label="rater win rate vs SFT")
  ax.axhline(0.5, ls=":", c="k", lw=1)
  ax.set_xticks(list(xs), names, fontsize=7)
  ax.set_ylim(0, 1)
  ax.legend(fontsize=7)
  ax.set_title("RLMR and baselines (held-out constraint prompts)")
  return _savefig(fig, workdir, "rlmr_comparison.png")


def _num(x: Any) -> float:
  return float(x) if isinstance(x, (int, float)) else float("nan")


def _pct(x: Any) -> str:
  if not isinstance(x, (int, float)) or not math.isfinite(x):
    return "n/a"
  return f"{100 * x:.1f}%"


def _interval(x: Any, low: Any, high: Any) -> str:
  if not isinstance(x, (int, float)):
    return "n/a"
  return f"{_pct(x)} [{_pct(low)}, {_pct(high)}]"


def _win(w: dict[str, Any] | None) -> str:
  if not w:
    return "n/a"
  if "win_rate" not in w:
    return f"n/a ({w.get('skipped', 'not evaluated')})"
  return f"{_interval(w['win_rate'], w['ci_low'], w['ci_high'])} (n={w['n']})"


def _var(v: dict[str, Any] | None) -> str:
  if not v or not v.get("steps"):
    return "n/a"
  return (
      f"{v['reward_group_var']:.3f} within groups, {v['reward_var']:.3f} "
      f"over the batch ({v['steps']} steps)"
  )


def load_results(workdir: str, name: str) -> Any:
  """A JSON file of the workdir, or {} if it does not exist."""
  path = os.path.join(workdir, name)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def rlcs_table(rlcs: dict[str, Any]) -> str:
  """The RLCS results as a markdown table with the paper's numbers."""
  settings = rlcs.get("settings", {})
  shaped = settings.get("shaping_target", "reward")
  lines = [
      "| metric | ours | paper |",
      "| --- | --- | --- |",
      f"| rater ceiling (noise-free rater vs noisy labels) | "
      f"{_pct(rlcs.get('rater_ceiling'))} | - |",
  ]
  judges = (
      ("genrm_sft", "GenRM-SFT agreement", "-"),
      (
          "genrm_grpo",
          f"GenRM SFT+GRPO agreement, shaping target={shaped}",
          PAPER["genrm_agreement"],
      ),
      ("genrm_grpo_noshape", "GenRM SFT+GRPO agreement, no shaping", "-"),
  )
  for key, label, paper in judges:
    if key not in rlcs:
      continue
    a = rlcs[key]
    lines.append(
        f"| {label} (avg of both orders) | {_pct(a.get('accuracy'))} "
        f"(consistent+correct {_pct(a.get('consistent_correct'))}, format "
        f"failures {_pct(a.get('format_failure_rate'))}, n={a.get('n')}) | "
        f"{paper} |"
    )
  if "scalar_rm" in rlcs:
    a = rlcs["scalar_rm"]
    lines.append(
        f"| scalar BT RM agreement | {_pct(a.get('accuracy'))} "
        f"(n={a.get('n')}) | - |"
    )
  lines += [
      f"| RL policy vs SFT, judged by the hidden rater | "
      f"{_win(rlcs.get('win_rate_rl_vs_sft_rater'))} | "
      f"{PAPER['rlcs_win_rate']} |",
      f"| RL policy vs SFT, judged by the GenRM | "
      f"{_win(rlcs.get('win_rate_rl_vs_sft_genrm'))} | - |",
  ]
  variance = rlcs.get("reward_variance", {})
  for stage, label in (
      ("genrm_grpo", f"GenRM GRPO reward variance, shaping={shaped}"),
      ("genrm_grpo_noshape", "GenRM GRPO reward variance, no shaping"),
  ):
    if stage in variance:
      lines.append(f"| {label} | {_var(variance[stage])} | - |")
  return "\n".join(lines) + "\n"


def rlmr_variants(workdir: str) -> list[tuple[str, dict[str, Any]]]:
  """(row name, row) for the SFT start, the baselines found, then RLMR.

  A row has `prompt_strict`, `prompt_strict_ci`, `instruction_strict`,
  `writing_mean`, `response_length`, `win` (rater win rate vs SFT), `steps`.
  """
  found = {}
  if os.path.isdir(workdir):
    for name in sorted(os.listdir(workdir)):
      if name == "rlmr" or name.startswith("rlmr_"):
        res = load_results(workdir, os.path.join(name, "results.json"))
        if res.get("after"):
          found[res.get("settings", {}).get("rule", name)] = res
  main = load_results(workdir, os.path.join("rlmr", "results.json"))
  start = main.get("before") or next(
      (r["before"] for r in found.values() if "before" in r), None
  )
  row = lambda ev, res: {
      "prompt_strict": ev.get("prompt_strict"),
      "prompt_strict_ci": ev.get("prompt_strict_ci"),
      "instruction_strict": ev.get("instruction_strict"),
      "writing_mean": ev.get("writing_mean"),
      "response_length": ev.get("response_length"),
      "num_prompts": ev.get("num_prompts"),
      "win": res.get("win_rate_vs_sft_rater") if res else None,
      "steps": (res or {}).get("settings", {}).get("steps"),
  }
  out = []
  if start:
    out.append(("sft", row(start, None)))
  order = [r for r in RLMR_ORDER if r in found]
  order += sorted(r for r in found if r not in RLMR_ORDER and r != "rlmr")
  order += ["rlmr"] if "rlmr" in found else []
  out += [(r, row(found[r]["after"], found[r])) for r in order]
  return out


def rlmr_table(variants: list[tuple[str, dict[str, Any]]]) -> str:
  """The RLMR comparison as a markdown table with the paper's numbers."""
  lines = [
      "| policy | GRPO steps | constraint prompt strict acc. [95% CI] | "
      "instruction strict acc. | writing score | rater win rate vs SFT "
      "[95% CI] | paper (8B-72B) |",
      "| --- | --- | --- | --- | --- | --- | --- |",
  ]
  for name, v in variants:
    ci = v.get("prompt_strict_ci") or (None, None)
    is_sft = name == "sft"
    cells = [
        "SFT start" if is_sft else name,
        "0" if is_sft else str(v.get("steps")),
        f"{_interval(v.get('prompt_strict'), *ci)} (n={v.get('num_prompts')})",
        _pct(v.get("instruction_strict")),
        f"{_num(v.get('writing_mean')):.3f}",
        "-" if is_sft else _win(v.get("win")),
        RLMR_PAPER.get(name, "-"),
    ]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def timings_table(workdir: str) -> str:
  """Wall time per stage, summed over the pipeline's invocations."""
  runs = load_results(workdir, "pipeline_timings.json") or []
  if not runs:
    return ""
  total: dict[str, float] = {}
  for r in runs:
    for stage, secs in r["stages"].items():
      total[stage] = total.get(stage, 0.0) + secs
  lines = ["| stage | minutes |", "| --- | ---: |"]
  lines += [f"| {s} | {t / 60:.1f} |" for s, t in total.items()]
  lines.append(f"| total | {sum(total.values()) / 60:.1f} |")
  return "\n".join(lines) + "\n"


def samples_section(workdir: str, stage: str = "sft", n: int = 2) -> str:
  """The first `n` prompt/continuation pairs of the stage's newest samples
  file (`trainers/sft.py` writes one per eval), prompts shortened to their
  last lines; "" when there is none."""
  stage_dir = os.path.join(workdir, stage)
  steps = []
  for name in os.listdir(stage_dir) if os.path.isdir(stage_dir) else ():
    stem = name.removeprefix("samples_").removesuffix(".txt")
    if name.startswith("samples_") and stem.isdigit():
      steps.append(int(stem))
  if not steps:
    return ""
  path = os.path.join(stage_dir, f"samples_{max(steps)}.txt")
  with open(path, encoding="utf-8") as f:
    blocks = f.read().split("=== PROMPT\n")[1:]
  lines = [
      f"From `{stage}/samples_{max(steps)}.txt` (temperature 0.7):",
      "",
  ]
  for block in blocks[:n]:
    prompt, _, completion = block.partition("=== CONTINUATION\n")
    tail = "\n".join(prompt.strip().splitlines()[-3:])
    lines += [
        "> " + tail.replace("\n", "\n> "),
        "",
        completion.strip(),
        "",
    ]
  return "\n".join(lines)


def write_report(workdir: str) -> str:
  """Writes WORKDIR/report.md (and plots/); returns its path."""
  rows = metrics_lib.read_metrics(workdir)
  lines = [
      "# rlcs_jax run report",
      "",
      f"Workdir: `{os.path.abspath(workdir)}`. All numbers are read from "
      "`metrics.jsonl` and the `*results*.json` files of this run; "
      "regenerate with `python -m rlcs_jax.eval.report WORKDIR`. Paper "
      "numbers are the papers' headline results at 7B-72B scale, shown for "
      "reference; ours come from a ~4.5M-parameter model on StoryWorld.",
      "",
  ]
  rlcs = load_results(workdir, "rlcs_results.json")
  if rlcs:
    lines += ["## RLCS", "", rlcs_table(rlcs)]
  variants = rlmr_variants(workdir)
  if variants:
    lines += [
        "## RLMR",
        "",
        "Held-out StoryWorld constraint prompts (each with 1-3 "
        "instructions), one greedy response per prompt. Writing score: "
        "the run's writing scorer (`rlmr.writing_score`); win rate: the "
        "hidden rater's noise-free score of each response vs the SFT "
        "policy's on the same prompt, ties 0.5, Wilson 95% interval.",
        "",
        rlmr_table(variants),
    ]
  grpo = load_results(workdir, os.path.join("grpo", "results.json"))
  if grpo:
    lines += [
        "## GRPO (verifiable reward)",
        "",
        "| | reward | response length | truncation |",
        "| --- | --- | --- | --- |",
    ]
    for k in ("before", "after"):
      v = grpo.get(k, {})
      lines.append(
          f"| {k} | {v.get('reward', float('nan')):.3f} | "
          f"{v.get('response_length', float('nan')):.1f} | "
          f"{_pct(v.get('truncation_rate'))} |"
      )
    lines.append("")
  samples = samples_section(workdir)
  if samples:
    lines += ["## Sample continuations (SFT policy)", "", samples]
  timings = timings_table(workdir)
  if timings:
    lines += ["## Wall time per stage", "", timings]
  plots = []
  for stage in rl_stages(rows):
    stage_rows = [r for r in rows if r.get("stage") == stage]
    plots += [
        plot_stage(workdir, stage, stage_rows),
        plot_constraints(workdir, stage, stage_rows),
    ]
  plots += [
      plot_agreement(workdir, rlcs),
      plot_reward_variance(workdir, rows),
      plot_rlmr(workdir, variants),
  ]
  plots = [p for p in plots if p]
  if plots:
    lines += ["## Plots", ""]
    lines += [
        f"![{os.path.basename(p)}](plots/{os.path.basename(p)})" for p in plots
    ]
  path = os.path.join(workdir, "report.md")
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  return path


if __name__ == "__main__":
  print(write_report(sys.argv[1]))
