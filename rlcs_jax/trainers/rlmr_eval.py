"""RLMR evaluation: IFEval metrics, writing score and rater win rate.

Owns how an RLMR policy is scored on held-out constraint prompts: one
response per prompt (greedy by default, `config.eval`), IFEval prompt- and
instruction-level accuracy (strict and loose) with a 95% Wilson interval on
the constraint prompt-level strict accuracy, the mean writing score, and the
writing-quality win rate against the SFT policy judged by the hidden rater
(StoryWorld prompts carry their structured `context`, which the rater scores
against). The SFT policy is evaluated once per workdir (`evaluate_sft`) and
every RLMR variant (the rule and its baselines) is compared to it.

Results are JSON files `W/<stage>/results.json`:
  settings                 the mixing rule and its settings, GRPO steps
  before / after           `evaluate_policy` summaries (SFT / trained policy)
  win_rate_vs_sft_rater    `rlcs_eval.win_rate_by_rater` of after vs before
`eval/report.py` renders them as the RLMR table.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Sequence

import jax
import ml_collections
import numpy as np

from rlcs_jax.data import jsonl
from rlcs_jax.eval import ifeval
from rlcs_jax.sampler import text as text_sampler
from rlcs_jax.trainers import rewards as rewards_lib
from rlcs_jax.trainers import rlcs
from rlcs_jax.verifiers import ifeval_io

if TYPE_CHECKING:
  from rlcs_jax.trainers import jobs

RESULTS = "results.json"


def eval_sampling_config(config: ml_collections.ConfigDict, tokenizer):
  e = config.eval
  return text_sampler.sampling_config(
      config.sampler,
      tokenizer,
      greedy=e.temperature == 0,
      max_new_tokens=e.max_new_tokens or config.rlmr_grpo.max_new_tokens,
      temperature=e.temperature or None,
  )


def evaluate_policy(
    run: "jobs.Run",
    params: Any,
    records: list[dict[str, Any]],
    writing_fn: rewards_lib.RewardFn,
    tag: str,
    *,
    stage: str,
) -> tuple[dict[str, Any], list[str]]:
  """IFEval metrics and mean writing score of one response per prompt.

  Returns (summary, response texts); the responses also go to
  W/<stage>/responses_<tag>.jsonl. `prompt_strict` is the constraint
  prompt-level strict accuracy (records all carry instructions), with its
  95% Wilson interval in `prompt_strict_ci`.
  """
  from rlcs_jax.eval import rlcs_eval  # pylint: disable=g-import-not-at-top

  metrics, responses = ifeval.generate_and_score(
      params,
      run.model_cfg,
      run.tokenizer,
      records,
      eval_sampling_config(run.config, run.tokenizer),
      jax.random.key(run.config.seed + 17),
      chunk_size=rlcs.GENERATION_CHUNK,
      batch_sharding=rlcs.rows_sharding(run.mesh),
  )
  texts = [r["response"] for r in responses]
  writing = writing_fn(
      rewards_lib.RewardBatch(
          prompts=[r["prompt"] for r in records],
          completions=texts,
          completion_ids=[run.tokenizer.encode(t) for t in texts],
          truncated=np.array([r["truncated"] for r in responses]),
          records=list(records),
          group_size=1,
      )
  )
  if jax.process_index() == 0:
    jsonl.write_jsonl(
        os.path.join(run.workdir, stage, f"responses_{tag}.jsonl"), responses
    )
  out = ifeval.headline(metrics)
  out.update(
      prompt_strict_ci=list(
          rlcs_eval.wilson_interval(
              metrics["strict"]["prompt_correct"], metrics["num_prompts"]
          )
      ),
      writing_mean=float(np.nanmean(writing)),
      response_length=metrics["response_length"],
      truncation_rate=metrics["truncation_rate"],
      num_prompts=metrics["num_prompts"],
      ifeval=metrics,
  )
  return out, texts


def rater_win_rate(
    run: "jobs.Run",
    records: Sequence[dict[str, Any]],
    texts: Sequence[str],
    baseline_texts: Sequence[str],
) -> dict[str, Any]:
  """Writing-quality win rate of `texts` over `baseline_texts` judged by the
  hidden rater (ties 0.5, 95% Wilson interval).

  Needs StoryWorld prompts: each IFEval record carries its structured story
  `context`, which the rater scores against. Other prompts (user JSONL, the
  bundled creative prompts) have no rater: the result says it was skipped.
  """
  contexts = [r.get("context") for r in records]
  if run.config.data.source != "storyworld" or not all(
      isinstance(c, dict) and c for c in contexts
  ):
    return {"skipped": "no StoryWorld context on the prompts (no rater)"}
  from rlcs_jax.eval import rlcs_eval  # pylint: disable=g-import-not-at-top

  return rlcs_eval.win_rate_by_rater(
      contexts, texts, baseline_texts, run.config.data.storyworld.seed
  )


def load_results(path: str) -> dict[str, Any]:
  """A results JSON file, or {} if there is none yet."""
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def save_results(path: str, results: dict[str, Any]) -> None:
  """Writes a results JSON file atomically (process 0)."""
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
      json.dump(results, f, indent=2)
    os.replace(path + ".tmp", path)


def evaluate_sft(
    run: "jobs.Run",
    params: Any,
    records: list[dict[str, Any]],
    writing_fn: rewards_lib.RewardFn,
    *,
    stage: str,
) -> tuple[dict[str, Any], list[str]]:
  """The starting policy's evaluation, computed once per workdir.

  Kept as `before` in W/<stage>/results.json with its responses in
  W/<stage>/responses_before.jsonl; every RLMR variant compares against it.
  """
  path = os.path.join(run.workdir, stage, RESULTS)
  responses = os.path.join(run.workdir, stage, "responses_before.jsonl")
  results = load_results(path)
  if "before" in results and os.path.exists(responses):
    texts = [r["response"] for r in ifeval_io.read_responses(responses)]
    if len(texts) == len(records):
      return results["before"], texts
  before, texts = evaluate_policy(
      run, params, records, writing_fn, "before", stage=stage
  )
  results["before"] = before
  save_results(path, results)
  return before, texts


def summary_table(results: dict[str, Any]) -> str:
  """Before/after headline numbers as markdown."""
  keys = (
      "prompt_strict",
      "prompt_loose",
      "instruction_strict",
      "instruction_loose",
      "writing_mean",
      "response_length",
  )
  tags = [t for t in ("before", "after") if t in results]
  lines = [
      "| metric | " + " | ".join(tags) + " |",
      "|---|" + "---:|" * len(tags),
  ]
  for k in keys:
    lines.append(
        f"| {k} | " + " | ".join(f"{results[t][k]:.3f}" for t in tags) + " |"
    )
  win = results.get("win_rate_vs_sft_rater", {})
  if "win_rate" in win:
    lines.append(
        f"| rater win rate vs SFT | | {win['win_rate']:.3f} "
        f"[{win['ci_low']:.3f}, {win['ci_high']:.3f}] |"
    )
  return "\n".join(lines) + "\n"
