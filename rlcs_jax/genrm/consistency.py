"""The RLCS consistency filter for GenRM SFT data.

Owns the rule that decides which teacher-annotated preference pairs are
trusted: a pair is kept only when the teacher prefers the same story in
both presentation orders AND that story is the labelled winner.

A record has `label` (1 or 2: which of `response_1`/`response_2` is
better), `teacher_12` (the teacher's reasoning with `response_1` shown
first; its verdict refers to positions, so `[[1]]` means `response_1`) and
`teacher_21` (with `response_2` shown first; `[[1]]` means `response_2`).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from rlcs_jax.genrm import verdict as verdict_lib

DROP_REASONS: tuple[str, ...] = (
    "missing_field",  # No label or teacher chain, or a label not in {1, 2}.
    "format_failure",  # A teacher chain has no valid final verdict.
    "order_inconsistent",  # The two orders prefer different stories.
    "disagrees_with_label",  # Consistent, but not the labelled winner.
)


def story_choice(record: Mapping[str, Any], order: str) -> int | None:
  """Which story (1 = response_1, 2 = response_2) a chain prefers."""
  parsed = verdict_lib.parse_verdict(record.get(f"teacher_{order}"))
  if not parsed.ok:
    return None
  if order == "12":
    return parsed.choice
  return 2 if parsed.choice == 1 else 1


def consistent_pairs(
    records: Iterable[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], dict[str, int]]:
  """Filters pairs; returns (kept records, counts of totals and reasons)."""
  kept = []
  stats = {"total": 0, "kept": 0, **{r: 0 for r in DROP_REASONS}}
  for record in records:
    stats["total"] += 1
    label = record.get("label")
    if (
        label not in (1, 2)
        or isinstance(label, bool)
        or not isinstance(record.get("teacher_12"), str)
        or not isinstance(record.get("teacher_21"), str)
    ):
      stats["missing_field"] += 1
      continue
    s12, s21 = story_choice(record, "12"), story_choice(record, "21")
    if s12 is None or s21 is None:
      stats["format_failure"] += 1
    elif s12 != s21:
      stats["order_inconsistent"] += 1
    elif s12 != label:
      stats["disagrees_with_label"] += 1
    else:
      stats["kept"] += 1
      kept.append(record)
  return kept, stats
