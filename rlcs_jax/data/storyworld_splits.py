"""Writes every StoryWorld split as JSONL: the embedded offline dataset.

Owns the split layout, record schemas, default sizes and seeding of the
StoryWorld dataset. `write_storyworld(out_dir, seed=...)` writes one
`<split>.jsonl` per split (UTF-8, one JSON object per line, written to a
temporary file and renamed into place) and returns split -> path. The
same seed gives byte-identical files. Every context appears in exactly one
record of one split, so train and eval splits never share a context.

Labels come from the hidden rater `rater.Rater(seed)`; reasoning chains
from `teacher.Teacher(seed)`. Evaluation that uses the rater as the human
judge must build it with the same seed.

Every record has:
  id       str, unique across all splits ("<split>-<index>")
  context  the structured story context (schema in `storyworld`)
  prompt   the rendered policy prompt ("Characters: ...\\nSetting: ...\\n
           Story so far: ...\\nOutline: 1. ... (mood). ...\\nContinue the
           story.")

Splits and their extra fields (default sizes in `DEFAULT_SIZES`):
  sft_train, sft_eval
      response     a continuation of mediocre quality (latent levels drawn
                   around 0.5) so that RL has room to improve.
  pairs_train, pairs_eval
      response_1, response_2   two continuations of different quality
      label        1 or 2: the hidden rater's noisy preference
      teacher_12   teacher reasoning with response_1 shown first; its
                   verdict line refers to positions ([[1]] = response_1)
      teacher_21   teacher reasoning with response_2 shown first
                   ([[1]] = response_2)
  contexts_train, contexts_eval
      reference    a mid-quality continuation (for `fixed_reference`
                   pivot judging)
  constraints_train, constraints_eval   (IFEval format)
      key                  int, unique within the split
      prompt               the policy prompt plus constraint sentences
      instruction_id_list  0-3 IFEval instruction ids
      kwargs               one dict per instruction (IFEval kwargs)
  sft_constraints   as constraints_* plus
      response     a continuation that satisfies every constraint about
                   half of the time
      compliant    bool: whether `response` passes every constraint
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from typing import Any, Callable, Iterator, Mapping

from rlcs_jax.data import quality
from rlcs_jax.data import rater as rater_lib
from rlcs_jax.data import storyworld
from rlcs_jax.data import storyworld_constraints as constraints
from rlcs_jax.data import storyworld_continuations as continuations
from rlcs_jax.data import teacher as teacher_lib

# Train splits come first so eval contexts are the ones checked against them.
DEFAULT_SIZES: dict[str, int] = {
    "sft_train": 20000,
    "pairs_train": 6000,
    "contexts_train": 2000,
    "constraints_train": 2000,
    "sft_constraints": 3000,
    "sft_eval": 500,
    "pairs_eval": 400,
    "contexts_eval": 200,
    "constraints_eval": 200,
}
SFT_LEVELS = (0.5, 0.2)  # (center, spread) of SFT latent levels.
REFERENCE_LEVELS = (0.5, 0.1)
SATISFY_PROBABILITY = 0.4  # sft_constraints answers built to comply.


class _Contexts:
  """Draws contexts that no earlier record has used."""

  def __init__(self):
    self.seen: set[str] = set()

  def draw(self, rng: random.Random) -> dict[str, Any]:
    while True:
      context = storyworld.sample_context(rng)
      key = storyworld.context_key(context)
      if key not in self.seen:
        self.seen.add(key)
        return context


def _base(split: str, i: int, context: dict[str, Any]) -> dict[str, Any]:
  return {
      "id": f"{split}-{i:06d}",
      "context": context,
      "prompt": storyworld.build_policy_prompt(context),
  }


def _sft(split, n, rng, contexts, env) -> Iterator[dict[str, Any]]:
  del env
  for i in range(n):
    context = contexts.draw(rng)
    levels = continuations.sample_levels(rng, *SFT_LEVELS)
    yield {
        **_base(split, i, context),
        "response": continuations.continuation(context, levels, rng),
    }


def _pairs(split, n, rng, contexts, env) -> Iterator[dict[str, Any]]:
  rater, teacher = env["rater"], env["teacher"]
  for i in range(n):
    context = contexts.draw(rng)
    while True:
      levels_1, levels_2 = continuations.sample_pair_levels(rng)
      r1 = continuations.continuation(context, levels_1, rng)
      r2 = continuations.continuation(context, levels_2, rng)
      if r1 != r2:
        break
    a1 = quality.analyze_detailed(context, r1)
    a2 = quality.analyze_detailed(context, r2)
    label = rater.label_scores(a1.scores, a2.scores, rng)
    chain_12, _ = teacher.judge_analyses(context, a1, a2, rng)
    chain_21, _ = teacher.judge_analyses(context, a2, a1, rng)
    yield {
        **_base(split, i, context),
        "response_1": r1,
        "response_2": r2,
        "label": label,
        "teacher_12": chain_12,
        "teacher_21": chain_21,
    }


def _contexts(split, n, rng, contexts, env) -> Iterator[dict[str, Any]]:
  del env
  for i in range(n):
    context = contexts.draw(rng)
    levels = continuations.sample_levels(rng, *REFERENCE_LEVELS)
    yield {
        **_base(split, i, context),
        "reference": continuations.continuation(context, levels, rng),
    }


def _satisfiable(context, rng) -> tuple[list[str], list[dict[str, Any]], str]:
  """Constraints plus one compliant answer (resampled until one exists)."""
  while True:
    ids, kwargs = constraints.sample_constraints(context, rng)
    levels = continuations.sample_levels(rng, *SFT_LEVELS)
    try:
      answer = constraints.constrained_continuation(
          context, ids, kwargs, levels, rng, satisfy=True
      )
    except ValueError:
      continue
    return ids, kwargs, answer


def _ifeval(split, i, context, ids, kwargs) -> dict[str, Any]:
  return {
      **_base(split, i, context),
      "key": i,
      "prompt": constraints.build_constraint_prompt(context, ids, kwargs),
      "instruction_id_list": ids,
      "kwargs": kwargs,
  }


def _constraints(split, n, rng, contexts, env) -> Iterator[dict[str, Any]]:
  del env
  for i in range(n):
    context = contexts.draw(rng)
    ids, kwargs, _ = _satisfiable(context, rng)
    yield _ifeval(split, i, context, ids, kwargs)


def _sft_constraints(split, n, rng, contexts, env) -> Iterator[dict[str, Any]]:
  del env
  for i in range(n):
    context = contexts.draw(rng)
    ids, kwargs, answer = _satisfiable(context, rng)
    if rng.random() >= SATISFY_PROBABILITY:
      levels = continuations.sample_levels(rng, *SFT_LEVELS)
      answer = continuations.continuation(context, levels, rng)
    yield {
        **_ifeval(split, i, context, ids, kwargs),
        "response": answer,
        "compliant": all(constraints.check(answer, ids, kwargs)),
    }


_Writer = Callable[..., Iterator[dict[str, Any]]]
WRITERS: dict[str, _Writer] = {
    "sft_train": _sft,
    "sft_eval": _sft,
    "pairs_train": _pairs,
    "pairs_eval": _pairs,
    "contexts_train": _contexts,
    "contexts_eval": _contexts,
    "constraints_train": _constraints,
    "constraints_eval": _constraints,
    "sft_constraints": _sft_constraints,
}


def _write_jsonl(path: str, records: Iterator[Mapping[str, Any]]) -> None:
  """Writes records atomically: a temporary file renamed into place."""
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".jsonl")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      for record in records:
        f.write(json.dumps(record, ensure_ascii=False, sort_keys=True))
        f.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; data files are shared.
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_storyworld(
    out_dir: str, *, seed: int, sizes: Mapping[str, int] | None = None
) -> dict[str, str]:
  """Writes all StoryWorld splits to `out_dir`; returns split -> path.

  Args:
    out_dir: directory to write `<split>.jsonl` files into (created).
    seed: the dataset seed; also seeds the hidden rater and the teacher.
    sizes: per-split record counts overriding `DEFAULT_SIZES` (a size of 0
      writes an empty file).
  """
  unknown = set(sizes or {}) - set(DEFAULT_SIZES)
  if unknown:
    raise ValueError(f"unknown StoryWorld splits: {sorted(unknown)}")
  counts = {**DEFAULT_SIZES, **(sizes or {})}
  if any(int(v) < 0 for v in counts.values()):
    raise ValueError(f"split sizes must be >= 0: {counts}")
  os.makedirs(out_dir, exist_ok=True)
  env = {"rater": rater_lib.Rater(seed), "teacher": teacher_lib.Teacher(seed)}
  contexts = _Contexts()
  paths = {}
  for split in DEFAULT_SIZES:
    rng = random.Random(f"storyworld:{seed}:{split}")
    path = os.path.join(out_dir, f"{split}.jsonl")
    _write_jsonl(
        path, WRITERS[split](split, int(counts[split]), rng, contexts, env)
    )
    paths[split] = path
  return paths
