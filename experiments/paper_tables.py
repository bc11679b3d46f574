"""The README's paper tables: the pipeline with its ablations, then tables.

  PYTHONPATH=. python -m experiments.paper_tables --workdir DIR \
      [--config configs/demo.py[:arg]] [--config.key=value ...] [--tables_only]

Runs the `pipeline` job (trainers/pipeline.py) on DIR with
`pipeline.ablations=True`: everything DIR already holds is reused (finished
stages are skipped, an interrupted one resumes, cached evaluations are read
back), so a workdir made by `make demo` only gains the ablation stages. Then
prints and writes DIR/paper_tables.md:

  RLCS   rater ceiling, GenRM-SFT agreement, GenRM GRPO agreement with and
         without entropy shaping, scalar RM agreement, RL policy vs SFT win
         rate judged by the hidden rater (95% CI), GenRM GRPO reward
         variance with and without shaping; the paper's numbers alongside.
  RLMR   SFT start, single_writing, single_constraint, fixed_mix and RLMR:
         constraint prompt-level strict accuracy and the hidden rater's
         writing-quality win rate vs SFT (95% CI); the paper's alongside.

`--tables_only` renders the tables from DIR without running anything.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULT_CONFIG = os.path.join(_REPO, "configs", "demo.py")
FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Command-line flags, defined only when run as a program: importing this
  module (the tests do, next to `experiments.launch`, which has its own
  `--config`) must not touch the global flag registry."""
  config_flags.DEFINE_config_file(
      "config",
      None,  # DEFAULT_CONFIG when not given (set in __main__).
      "Pipeline config file, e.g. configs/demo.py[:arg].",
      lock_config=True,
  )
  flags.DEFINE_string("workdir", None, "Run directory (reused).")
  flags.DEFINE_bool(
      "tables_only", False, "Only render the tables from the workdir."
  )


TABLES_FILE = "paper_tables.md"


def _setup_line(workdir: str) -> str:
  """Model and budgets of the run, from its saved config.json."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return ""
  with open(path) as f:
    c = json.load(f)
  steps = lambda section: c[section]["steps"]
  return (
      f"Model preset `{c['model']['preset']}`, StoryWorld seed "
      f"{c['data']['storyworld']['seed']}. Steps: policy SFT "
      f"{steps('sft')}, scalar RM {steps('scalar_rm')}, GenRM SFT "
      f"{c['genrm']['sft']['steps']}, GenRM GRPO {steps('genrm_grpo')}, "
      f"RLCS policy GRPO {steps('rlcs_grpo')}, RLMR (and each baseline) "
      f"GRPO {steps('rlmr_grpo')}."
  )


def tables(workdir: str) -> str:
  """Both tables as markdown, from the workdir's results files."""
  from rlcs_jax.eval import report  # pylint: disable=g-import-not-at-top

  rlcs = report.load_results(workdir, "rlcs_results.json")
  variants = report.rlmr_variants(workdir)
  lines = [
      "# Paper tables (small-scale reproduction)",
      "",
      _setup_line(workdir),
      "",
      "Paper numbers are the papers' headline results at 7B-72B scale with "
      "human (RLCS) or expert (RLMR) judges; ours come from a tiny model on "
      "StoryWorld judged by its hidden rater. Compare directions, not "
      "magnitudes.",
      "",
      "## RLCS (GenRM with entropy-shaped GRPO, pivot-judged policy RL)",
      "",
      report.rlcs_table(rlcs) if rlcs else "(no RLCS results)\n",
      "Reward variance: mean over the GenRM GRPO steps of the variance of "
      "the rewards fed to group normalisation (shaped rewards lie in "
      "[-1, 1] with magnitude >= lambda_min, plain ones are +-1).",
      "",
      "## RLMR (writing score x constraints, dynamic mixing)",
      "",
      report.rlmr_table(variants) if variants else "(no RLMR results)\n",
  ]
  return "\n".join(lines) + "\n"


def run(config, workdir: str, *, tables_only: bool = False) -> str:
  """Runs the pipeline with ablations on `workdir`; writes and returns the
  tables."""
  if not tables_only:
    from rlcs_jax.trainers import jobs  # pylint: disable=g-import-not-at-top

    config = config.copy_and_resolve_references()
    config.job = "pipeline"
    config.pipeline.ablations = True
    jobs.JOBS["pipeline"](config, workdir)
  text = tables(workdir)
  path = os.path.join(workdir, TABLES_FILE)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(path + ".tmp", path)
  return text


def main(argv):
  del argv
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required")
  from rlcs_jax import preemption  # pylint: disable=g-import-not-at-top

  try:
    text = run(FLAGS.config, FLAGS.workdir, tables_only=FLAGS.tables_only)
  except preemption.Preempted as e:  # Checkpoint saved: rerun to resume.
    print(e, file=sys.stderr)
    sys.exit(1)
  print(text)
  print(f"wrote {os.path.join(FLAGS.workdir, TABLES_FILE)}")


if __name__ == "__main__":
  if _REPO not in sys.path:
    sys.path.insert(0, _REPO)  # Config files import `configs.common`.
  from rlcs_jax import config_keys  # pylint: disable=g-import-not-at-top
  from rlcs_jax import host_memory  # pylint: disable=g-import-not-at-top

  host_memory.reuse_freed_memory()  # As `rlcs_jax.main` does.
  if not any(a == "--config" or a.startswith("--config=") for a in sys.argv):
    sys.argv.insert(1, f"--config={DEFAULT_CONFIG}")
  try:
    config_keys.check_overrides(sys.argv[1:])  # Names the nearest valid keys.
  except (config_keys.UnknownConfigKeyError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  _define_flags()
  app.run(main)
