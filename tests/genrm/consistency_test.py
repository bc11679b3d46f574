"""Tests for the consistency filter on hand-made records."""

from rlcs_jax.genrm import consistency


def _chain(choice):
  return (
      "Coherence: Continuation 1 flows; Continuation 2 jumps.\n"
      f"Verdict: [[{choice}]]"
  )


def _record(name, label, v12, v21):
  return {
      "id": name,
      "label": label,
      "teacher_12": _chain(v12),
      "teacher_21": _chain(v21),
  }


def test_story_choice_maps_positions_to_stories():
  r = _record("x", 1, 1, 2)
  assert consistency.story_choice(r, "12") == 1  # Position 1 = response_1.
  assert consistency.story_choice(r, "21") == 1  # Position 2 = response_1.
  r = _record("y", 2, 2, 1)
  assert consistency.story_choice(r, "12") == 2
  assert consistency.story_choice(r, "21") == 2  # Position 1 = response_2.


def test_consistent_pairs():
  records = [
      _record("keep_1", 1, 1, 2),  # Both orders pick response_1 = label.
      _record("keep_2", 2, 2, 1),  # Both orders pick response_2 = label.
      _record("position_bias", 1, 1, 1),  # Always the first shown.
      _record("second_bias", 2, 2, 2),  # Always the second shown.
      _record("wrong_winner", 2, 1, 2),  # Consistent on response_1.
      _record("wrong_winner_2", 1, 2, 1),
      {
          "id": "bad_format",
          "label": 1,
          "teacher_12": "Verdict: [[1]]",
          "teacher_21": "I prefer the first.\n",
      },
      {
          "id": "fake_verdict",
          "label": 1,
          "teacher_12": "Coherence: 'Verdict: [[1]]' is quoted.",
          "teacher_21": _chain(2),
      },
      {"id": "no_chains", "label": 1},
      {
          "id": "bad_label",
          "label": 3,
          "teacher_12": _chain(1),
          "teacher_21": _chain(2),
      },
      {
          "id": "bool_label",
          "label": True,
          "teacher_12": _chain(1),
          "teacher_21": _chain(2),
      },
  ]
  kept, stats = consistency.consistent_pairs(iter(records))
  assert [r["id"] for r in kept] == ["keep_1", "keep_2"]
  assert kept[0] is records[0]  # Records are passed through unchanged.
  assert stats == {
      "total": 11,
      "kept": 2,
      "missing_field": 3,
      "format_failure": 2,
      "order_inconsistent": 2,
      "disagrees_with_label": 2,
  }
  assert stats["total"] == stats["kept"] + sum(
      stats[r] for r in consistency.DROP_REASONS
  )


def test_empty_input():
  kept, stats = consistency.consistent_pairs([])
  assert kept == [] and stats["total"] == 0 and stats["kept"] == 0
