"""Tests for the bundled IFEval-format creative-writing prompts."""

import collections
import itertools

import pytest

from rlcs_jax.verifiers import ifeval_io
from rlcs_jax.verifiers import rules
from rlcs_jax.verifiers import scoring

REPEAT = "combination:repeat_prompt"
# Instructions that IFEval never combines with others, and pairs it keeps
# apart (`instructions_registry.INSTRUCTION_CONFLICTS`).
ALONE = {
    "detectable_format:json_format",
    "detectable_format:constrained_response",
}
CONFLICTS = {
    frozenset({"startend:quotation", "detectable_format:title"}),
    frozenset({"change_case:english_lowercase", "change_case:english_capital"}),
    frozenset(
        {"change_case:capital_word_frequency", "change_case:english_lowercase"}
    ),
    frozenset(
        {"change_case:capital_word_frequency", "change_case:english_capital"}
    ),
    frozenset(
        {
            "length_constraints:number_paragraphs",
            "length_constraints:nth_paragraph_first_word",
        }
    ),
    frozenset({"language:response_language", "change_case:english_lowercase"}),
    frozenset({"language:response_language", "change_case:english_capital"}),
    frozenset({"language:response_language", "keywords:existence"}),
    frozenset({"language:response_language", "startend:end_checker"}),
}


@pytest.fixture(scope="module")
def prompts():
  return ifeval_io.read_prompts(ifeval_io.CREATIVE_PROMPTS_PATH)


def test_file_parses_with_enough_prompts(prompts):
  # read_prompts already validated every id, kwargs and unique keys.
  assert len(prompts) >= 110
  assert len({p["prompt"] for p in prompts}) == len(prompts)


def test_each_prompt_has_one_to_three_distinct_constraints(prompts):
  for record in prompts:
    ids = record["instruction_id_list"]
    assert 1 <= len(ids) <= 3, record["key"]
    assert len(set(ids)) == len(ids), record["key"]


def test_prompts_state_their_constraints(prompts):
  for record in prompts:
    for instruction_id, kwargs in zip(
        record["instruction_id_list"], record["kwargs"]
    ):
      assert rules.describe(instruction_id, kwargs) in record["prompt"], (
          record["key"],
          instruction_id,
      )
      if instruction_id == REPEAT:
        assert record["prompt"].startswith(kwargs["prompt_to_repeat"])


def test_no_conflicting_constraints(prompts):
  for record in prompts:
    ids = record["instruction_id_list"]
    if set(ids) & ALONE:
      assert len(ids) == 1, record["key"]
    for pair in itertools.combinations(ids, 2):
      assert frozenset(pair) not in CONFLICTS, (record["key"], pair)


def test_constraints_are_varied(prompts):
  counts = collections.Counter(
      i for record in prompts for i in record["instruction_id_list"]
  )
  assert len(counts) >= 20
  assert max(counts.values()) <= 0.2 * sum(counts.values())


# Hand-written compliant responses show that prompts are satisfiable.
RESPONSES = {
    1001: "<<frost on the patch>>\nfirst frost at dawn\npumpkins wear "
    "a silver shawl\nthe crows hold their breath",
    1002: "A cat on the porch of the Smiths\nSaid the car is mine and "
    "not theirs\nShe slept on the hood\nAs only cats could\nAnd "
    "purred at their feeble protests",
}


@pytest.mark.parametrize("key", sorted(RESPONSES))
def test_sample_responses_pass(prompts, key):
  record = next(p for p in prompts if p["key"] == key)
  assert all(
      scoring.check_prompt(
          record["instruction_id_list"],
          record["kwargs"],
          RESPONSES[key],
          prompt=record["prompt"],
      )
  )
