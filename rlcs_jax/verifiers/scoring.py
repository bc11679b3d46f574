"""Scoring responses against IFEval instructions: strict, loose, metrics.

Owns the IFEval evaluation conventions (`evaluation_lib.py` in
google-research/instruction_following_eval) on top of `rules.RULES`:

* strict: the rule holds on the response, and the response is not blank
  (a blank response fails every instruction, even "no commas");
* loose: some variant of the response is not blank and satisfies the rule.
  The variants are the response, it with its first line removed, its last
  line removed, both removed (lines split on "\\n", removals stripped),
  and each of those four with every `*` deleted;
* metrics: prompt-level accuracy (all of a prompt's instructions followed)
  and instruction-level accuracy, strict and loose, plus accuracy per
  instruction id and per id category (the part before ":").

Only malformed instruction specs raise (`ValueError`); any response text
scores.
"""

from collections.abc import Iterable, Sequence
from typing import Any

from rlcs_jax.verifiers import rules

MODES = ("strict", "loose")
VIOLATION_KINDS = ("any", "fraction")
_REPEAT_ID = "combination:repeat_prompt"
# The start of the repeat instruction's own sentence, cut from the prompt
# when the prompt stands in for a missing `prompt_to_repeat`.
_REPEAT_SENTENCE = rules.INSTRUCTION_TEXT[_REPEAT_ID].split(",")[0]


def loose_variants(response: str) -> list[str]:
  """Returns IFEval's eight loose-mode variants of a response."""
  lines = response.split("\n")
  remove_first = "\n".join(lines[1:]).strip()
  remove_last = "\n".join(lines[:-1]).strip()
  remove_both = "\n".join(lines[1:-1]).strip()
  variants = [response, remove_first, remove_last, remove_both]
  return variants + [variant.replace("*", "") for variant in variants]


def _check_mode(mode: str) -> None:
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")


def _resolve_kwargs(
    instruction_id: str, kwargs: dict[str, Any] | None, prompt: str | None
) -> dict[str, Any]:
  """Validates kwargs; a repeat instruction may take the prompt instead."""
  if (
      instruction_id == _REPEAT_ID
      and prompt is not None
      and (kwargs is None or isinstance(kwargs, dict))
      and not (kwargs or {}).get("prompt_to_repeat")
  ):
    request = prompt.split(_REPEAT_SENTENCE)[0].strip()
    kwargs = {**(kwargs or {}), "prompt_to_repeat": request}
  return rules.validate_kwargs(instruction_id, kwargs)


def _follows(
    instruction_id: str, kwargs: dict[str, Any], candidates: Sequence[str]
) -> bool:
  """True if a non-blank candidate satisfies the (validated) instruction."""
  rule = rules.RULES[instruction_id]
  return any(
      candidate.strip() and rule(candidate, **kwargs)
      for candidate in candidates
  )


def _candidates(response: str, mode: str) -> list[str]:
  if not isinstance(response, str):
    raise ValueError(f"response must be a str, got {type(response).__name__}.")
  return [response] if mode == "strict" else loose_variants(response)


def check_instruction(
    instruction_id: str,
    kwargs: dict[str, Any] | None,
    response: str,
    *,
    prompt: str | None = None,
    mode: str = "strict",
) -> bool:
  """Checks one instruction on a response, strictly or loosely.

  Args:
    instruction_id: An IFEval instruction id, a key of `rules.RULES`.
    kwargs: The instruction's kwargs (None values are ignored).
    response: The model's response; any text.
    prompt: The prompt. Used only by `combination:repeat_prompt` without a
      `prompt_to_repeat` kwarg: the prompt up to the repeat instruction's
      own sentence is the request to repeat.
    mode: "strict" or "loose".

  Returns:
    Whether the response follows the instruction.

  Raises:
    ValueError: if the id, kwargs or mode are malformed.
  """
  _check_mode(mode)
  kwargs = _resolve_kwargs(instruction_id, kwargs, prompt)
  return _follows(instruction_id, kwargs, _candidates(response, mode))


def check_prompt(
    instruction_id_list: Sequence[str],
    kwargs_list: Sequence[dict[str, Any] | None],
    response: str,
    *,
    prompt: str | None = None,
    mode: str = "strict",
) -> list[bool]:
  """Checks each of a prompt's instructions; returns one bool per id."""
  _check_mode(mode)
  for name, value in (
      ("instruction_id_list", instruction_id_list),
      ("kwargs", kwargs_list),
  ):
    if not isinstance(value, (list, tuple)):
      raise ValueError(f"{name} must be a list, got {type(value).__name__}.")
  if len(instruction_id_list) != len(kwargs_list):
    raise ValueError(
        f"instruction_id_list has {len(instruction_id_list)} ids but "
        f"kwargs has {len(kwargs_list)} entries; expected one dict per id."
    )
  resolved = [
      _resolve_kwargs(instruction_id, kwargs, prompt)
      for instruction_id, kwargs in zip(instruction_id_list, kwargs_list)
  ]
  candidates = _candidates(response, mode)
  return [
      _follows(instruction_id, kwargs, candidates)
      for instruction_id, kwargs in zip(instruction_id_list, resolved)
  ]


def violation(
    instruction_id_list: Sequence[str],
    kwargs_list: Sequence[dict[str, Any] | None],
    response: str,
    *,
    prompt: str | None = None,
    mode: str = "strict",
    kind: str = "any",
) -> float:
  """Returns the violation flag (kind="any") or failed fraction ("fraction").

  Args:
    instruction_id_list: The prompt's instruction ids.
    kwargs_list: One kwargs dict per id.
    response: The model's response.
    prompt: The prompt (see `check_instruction`).
    mode: "strict" or "loose".
    kind: "any" gives 1.0 if any instruction fails, else 0.0; "fraction"
      gives the fraction of instructions that fail.

  Returns:
    A float in [0, 1]; 0.0 when there are no instructions.
  """
  if kind not in VIOLATION_KINDS:
    raise ValueError(f"kind must be one of {VIOLATION_KINDS}, got {kind!r}.")
  followed = check_prompt(
      instruction_id_list, kwargs_list, response, prompt=prompt, mode=mode
  )
  if not followed:
    return 0.0
  failed = followed.count(False)
  if kind == "any":
    return float(failed > 0)
  return failed / len(followed)


def _ratio(correct: int, total: int) -> float:
  return correct / total if total else 0.0


def _record_field(record: dict[str, Any], index: int, name: str) -> Any:
  if name not in record:
    raise ValueError(
        f"record {index}: missing field {name!r}; expected keys prompt, "
        "instruction_id_list, kwargs, response."
    )
  return record[name]


def evaluate(
    records: Iterable[dict[str, Any]],
    *,
    modes: Sequence[str] = MODES,
) -> dict[str, Any]:
  """Computes IFEval accuracies over scored records.

  Args:
    records: Dicts with keys prompt, instruction_id_list, kwargs (one dict
      per id) and response, e.g. from `ifeval_io.join_responses`.
    modes: Which of "strict" and "loose" to compute.

  Returns:
    A dict with, for each mode, `{mode: {"prompt_accuracy",
    "instruction_accuracy", "prompt_correct", "instruction_correct",
    "per_instruction": {id: accuracy}, "per_category": {category:
    accuracy}}}`, and the counts `num_prompts`, `num_instructions`,
    `instruction_counts` ({id: n}) and `category_counts`. Accuracies are
    0.0 where their count is 0.
  """
  for mode in modes:
    _check_mode(mode)
  num_prompts = 0
  instruction_counts: dict[str, int] = {}
  prompt_correct = {mode: 0 for mode in modes}
  correct = {mode: {} for mode in modes}
  for index, record in enumerate(records):
    ids = _record_field(record, index, "instruction_id_list")
    kwargs_list = _record_field(record, index, "kwargs")
    response = _record_field(record, index, "response")
    prompt = record.get("prompt")
    num_prompts += 1
    for instruction_id in ids:
      instruction_counts[instruction_id] = (
          instruction_counts.get(instruction_id, 0) + 1
      )
    for mode in modes:
      try:
        followed = check_prompt(
            ids, kwargs_list, response, prompt=prompt, mode=mode
        )
      except ValueError as e:
        raise ValueError(f"record {index}: {e}") from e
      prompt_correct[mode] += all(followed)
      for instruction_id, ok in zip(ids, followed):
        correct[mode][instruction_id] = (
            correct[mode].get(instruction_id, 0) + ok
        )
  category_counts: dict[str, int] = {}
  for instruction_id, count in instruction_counts.items():
    category = instruction_id.split(":")[0]
    category_counts[category] = category_counts.get(category, 0) + count
  num_instructions = sum(instruction_counts.values())
  result: dict[str, Any] = {
      "num_prompts": num_prompts,
      "num_instructions": num_instructions,
      "instruction_counts": dict(sorted(instruction_counts.items())),
      "category_counts": dict(sorted(category_counts.items())),
  }
  for mode in modes:
    by_id = correct[mode]
    by_category: dict[str, int] = {}
    for instruction_id, count in by_id.items():
      category = instruction_id.split(":")[0]
      by_category[category] = by_category.get(category, 0) + count
    total_correct = sum(by_id.values())
    result[mode] = {
        "prompt_accuracy": _ratio(prompt_correct[mode], num_prompts),
        "instruction_accuracy": _ratio(total_correct, num_instructions),
        "prompt_correct": prompt_correct[mode],
        "instruction_correct": total_correct,
        "per_instruction": {
            instruction_id: _ratio(by_id.get(instruction_id, 0), count)
            for instruction_id, count in sorted(instruction_counts.items())
        },
        "per_category": {
            category: _ratio(by_category.get(category, 0), count)
            for category, count in sorted(category_counts.items())
        },
    }
  return result
