"""IFEval metrics of a model: scoring response files, generating and scoring.

Owns the `ifeval_eval` job, which scores any model's responses (IFEval
response format: one `{"prompt": ..., "response": ...}` per line) against
IFEval prompts and writes `ifeval_metrics.json` and `ifeval_metrics.md`
(prompt- and instruction-level accuracy, strict and loose, and accuracy per
instruction type) to the workdir; and `generate_and_score`, which samples
one response per prompt from a policy and scores it the same way (RLMR's
before/after evaluation).

  python -m rlcs_jax.main --config configs/rlmr_tiny.py \\
      --config.job=ifeval_eval --config.eval.prompts=prompts.jsonl \\
      --config.eval.responses=responses.jsonl --workdir /tmp/ifeval

Malformed input lines fail with `path:line: what was expected`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

from absl import logging
import jax
import ml_collections
import numpy as np

from rlcs_jax.model.config import ModelConfig
from rlcs_jax.sampler import sampling
from rlcs_jax.sampler import text as text_sampler
from rlcs_jax.tokenizer import Tokenizer
from rlcs_jax.verifiers import ifeval_io
from rlcs_jax.verifiers import scoring

METRICS_JSON = "ifeval_metrics.json"
METRICS_MD = "ifeval_metrics.md"


def headline(metrics: dict[str, Any]) -> dict[str, float]:
  """The four IFEval numbers, flat: {prompt,instruction}_{strict,loose}."""
  out = {}
  for mode in scoring.MODES:
    if mode in metrics:
      out[f"prompt_{mode}"] = metrics[mode]["prompt_accuracy"]
      out[f"instruction_{mode}"] = metrics[mode]["instruction_accuracy"]
  return out


def score_files(
    prompts_path: str, responses_path: str, *, skip_missing: bool = False
) -> dict[str, Any]:
  """IFEval metrics (`scoring.evaluate`) of a responses file.

  Responses are matched to prompts by exact prompt text; responses to
  prompts not in the prompts file are ignored (and counted).

  Raises:
    ValueError: naming the file (and line) of a malformed record, a prompt
      without a response (unless `skip_missing`), or no match at all.
  """
  prompts = ifeval_io.read_prompts(prompts_path)
  responses = ifeval_io.read_responses(responses_path)
  try:
    joined = ifeval_io.join_responses(
        prompts, responses, skip_missing=skip_missing
    )
  except ValueError as e:
    raise ValueError(f"{responses_path}: {e}") from e
  if not joined:
    raise ValueError(
        f"{responses_path}: no response matches a prompt of {prompts_path}"
    )
  known = {r["prompt"] for r in prompts}
  unmatched = sum(r["prompt"] not in known for r in responses)
  if unmatched:
    logging.warning(
        "%s: %d responses have no prompt in %s; ignored",
        responses_path,
        unmatched,
        prompts_path,
    )
  try:
    metrics = scoring.evaluate(joined)
  except ValueError as e:
    raise ValueError(f"{prompts_path}: {e}") from e
  metrics["unmatched_responses"] = unmatched
  metrics["prompts_file"] = os.fspath(prompts_path)
  metrics["responses_file"] = os.fspath(responses_path)
  return metrics


def _cell(metrics: dict[str, Any], mode: str, key: str, total: int) -> str:
  if mode not in metrics:
    return "-"
  correct = metrics[mode][f"{key}_correct"]
  return f"{metrics[mode][f'{key}_accuracy']:.3f} ({correct}/{total})"


def markdown_table(metrics: dict[str, Any]) -> str:
  """Accuracy by level × mode, then by instruction type, as markdown."""
  modes = [m for m in scoring.MODES if m in metrics]
  lines = [
      "| level | " + " | ".join(modes) + " |",
      "|---|" + "---:|" * len(modes),
  ]
  for level, key, total in (
      ("prompt", "prompt", metrics["num_prompts"]),
      ("instruction", "instruction", metrics["num_instructions"]),
  ):
    cells = [_cell(metrics, m, key, total) for m in modes]
    lines.append(f"| {level} | " + " | ".join(cells) + " |")
  lines += [
      "",
      "| instruction | n | " + " | ".join(modes) + " |",
      "|---|---:|" + "---:|" * len(modes),
  ]
  for instruction_id, n in metrics["instruction_counts"].items():
    cells = [
        f"{metrics[m]['per_instruction'][instruction_id]:.3f}" for m in modes
    ]
    lines.append(f"| {instruction_id} | {n} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def generate_and_score(
    params: Any,
    model_cfg: ModelConfig,
    tokenizer: Tokenizer,
    records: Sequence[dict[str, Any]],
    sampling_cfg: sampling.SamplingConfig,
    rng: jax.Array,
    *,
    chunk_size: int = 32,
    batch_sharding=None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """Samples one response per IFEval record and scores it.

  Args:
    params: policy parameters.
    model_cfg: the policy's model config.
    tokenizer: its tokenizer (prompts go through `format_prompt`).
    records: IFEval prompt records (prompt, instruction_id_list, kwargs).
    sampling_cfg: how to sample (greedy for standard IFEval numbers).
    rng: sampling key.
    chunk_size: rows per generation call (one compiled batch shape).
    batch_sharding: shards each chunk's rows over devices (chunk_size must
      be a multiple of the mesh's batch divisor); None replicates them.

  Returns:
    (metrics, responses): `scoring.evaluate` metrics plus `response_length`
    (mean tokens) and `truncation_rate`; responses in IFEval response
    format, each with an extra `truncated` flag.
  """
  if not records:
    raise ValueError("generate_and_score: no prompt records")
  prompts = [r["prompt"] for r in records]
  out = text_sampler.generate_text(
      params,
      model_cfg,
      tokenizer,
      prompts,
      sampling_cfg,
      rng,
      # Sharded chunks keep their (divisible) size; replicated ones need
      # no more rows than there are prompts.
      chunk_size=(
          chunk_size
          if batch_sharding is not None
          else min(chunk_size, len(prompts))
      ),
      batch_sharding=batch_sharding,
  )
  metrics = scoring.evaluate(
      [{**r, "response": t} for r, t in zip(records, out.texts)]
  )
  metrics["response_length"] = float(np.mean(out.lengths))
  metrics["truncation_rate"] = float(np.mean(out.truncated))
  responses = [
      {"prompt": p, "response": t, "truncated": bool(tr)}
      for p, t, tr in zip(prompts, out.texts, out.truncated)
  ]
  return metrics, responses


def write_report(workdir: str, metrics: dict[str, Any]) -> str:
  """Writes ifeval_metrics.json and .md into `workdir`; returns the table."""
  table = markdown_table(metrics)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    for name, text in (
        (METRICS_JSON, json.dumps(metrics, indent=2)),
        (METRICS_MD, table),
    ):
      path = os.path.join(workdir, name)
      with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
      os.replace(path + ".tmp", path)
  return table


def ifeval_eval_job(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Scores `eval.responses` against `eval.prompts`; writes and prints."""
  e = config.eval
  if not e.responses:
    raise ValueError(
        "ifeval_eval needs --config.eval.responses=FILE: JSONL lines "
        '{"prompt": ..., "response": ...}'
    )
  prompts = e.prompts or os.fspath(ifeval_io.CREATIVE_PROMPTS_PATH)
  metrics = score_files(prompts, e.responses, skip_missing=e.skip_missing)
  table = write_report(workdir, metrics)
  if jax.process_index() == 0:
    print(f"IFEval: {metrics['num_prompts']} prompts from {prompts}\n")
    print(table)
