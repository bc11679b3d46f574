"""`report.md` and PNG plots of a run, from its metrics.jsonl and results.

Everything shown is read back from files the stages wrote, so the report can
be regenerated at any time: `python -m rlcs_jax.eval.report WORKDIR`.
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

RL_STAGES = ("grpo", "genrm_grpo", "rlcs_policy", "rlmr")
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


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
  xs, ys = [], []
  for r in rows:
    v = r.get(key)
    if isinstance(v, (int, float)) and math.isfinite(v):
      xs.append(r["step"])
      ys.append(v)
  return xs, ys


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
  fig.tight_layout()
  path = os.path.join(workdir, "plots", f"{stage}_curves.png")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def plot_constraints(workdir: str, stage: str, rows: list[dict]) -> str | None:
  """Pass rate per instruction type over steps (`constraint/<id>` keys)."""
  keys = sorted({k for r in rows for k in r if k.startswith("constraint/")})
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
  fig.tight_layout()
  path = os.path.join(workdir, "plots", f"{stage}_constraints.png")
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def plot_agreement(workdir: str, rlcs: dict[str, Any]) -> str | None:
  names = [n for n in ("genrm_sft", "genrm_grpo") if n in rlcs]
  if not names:
    return None
  fig, ax = plt.subplots(figsize=(5, 3.2))
  vals = [rlcs[n]["accuracy"] for n in names]
  ax.bar(names, vals, color=["#999", "#37c"])
  if "rater_ceiling" in rlcs:
    ax.axhline(rlcs["rater_ceiling"], ls="--", c="k", label="rater ceiling")
    ax.legend()
  ax.set_ylim(0, 1)
  ax.set_ylabel("agreement with held-out labels")
  ax.set_title("GenRM agreement before/after GRPO")
  fig.tight_layout()
  path = os.path.join(workdir, "plots", "genrm_agreement.png")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def _pct(x: Any) -> str:
  return f"{100 * x:.1f}%" if isinstance(x, (int, float)) else "n/a"


def _win(w: dict[str, Any] | None) -> str:
  if not w:
    return "n/a"
  return (
      f"{_pct(w['win_rate'])} [{_pct(w['ci_low'])}, {_pct(w['ci_high'])}]"
      f" (n={w['n']})"
  )


def _load(workdir: str, name: str) -> dict[str, Any]:
  path = os.path.join(workdir, name)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def write_report(workdir: str) -> str:
  """Writes WORKDIR/report.md (and plots/); returns its path."""
  rows = metrics_lib.read_metrics(workdir)
  lines = [
      "# rlcs_jax run report",
      "",
      f"Workdir: `{os.path.abspath(workdir)}`. All numbers are read from "
      "`metrics.jsonl` and the `*results*.json` files of this run; "
      "regenerate with `python -m rlcs_jax.eval.report WORKDIR`.",
      "",
  ]
  rlcs = _load(workdir, "rlcs_results.json")
  if rlcs:
    lines += [
        "## RLCS",
        "",
        "| metric | ours | paper |",
        "| --- | --- | --- |",
        f"| rater ceiling (noise-free rater vs noisy labels) | "
        f"{_pct(rlcs.get('rater_ceiling'))} | - |",
    ]
    for name in ("genrm_sft", "genrm_grpo"):
      a = rlcs.get(name, {})
      lines.append(
          f"| {name} agreement (avg of both orders) | "
          f"{_pct(a.get('accuracy'))} (consistent+correct "
          f"{_pct(a.get('consistent_correct'))}, format failures "
          f"{_pct(a.get('format_failure_rate'))}) | "
          f"{PAPER['genrm_agreement'] if name == 'genrm_grpo' else '-'} |"
      )
    if "scalar_rm" in rlcs:
      lines.append(
          f"| scalar BT RM agreement | "
          f"{_pct(rlcs['scalar_rm'].get('accuracy'))} | - |"
      )
    lines += [
        f"| RL policy vs SFT, judged by the hidden rater | "
        f"{_win(rlcs.get('win_rate_rl_vs_sft_rater'))} | "
        f"{PAPER['rlcs_win_rate']} |",
        f"| RL policy vs SFT, judged by the GenRM | "
        f"{_win(rlcs.get('win_rate_rl_vs_sft_genrm'))} | - |",
        "",
    ]
  rlmr = _load(workdir, os.path.join("rlmr", "results.json"))
  if rlmr:
    lines += [
        "## RLMR",
        "",
        "```json",
        json.dumps(rlmr, indent=2)[:4000],
        "```",
        f"Paper: {PAPER['rlmr_ifeval']}; " f"{PAPER['rlmr_win_rate']}.",
        "",
    ]
  grpo = _load(workdir, os.path.join("grpo", "results.json"))
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
  plots = []
  for stage in RL_STAGES:
    stage_rows = [r for r in rows if r.get("stage") == stage]
    plots += [
        plot_stage(workdir, stage, stage_rows),
        plot_constraints(workdir, stage, stage_rows),
    ]
  plots.append(plot_agreement(workdir, rlcs))
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
