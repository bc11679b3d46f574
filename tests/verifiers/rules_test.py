"""Tests for rlcs_jax.verifiers.rules: examples, IFEval semantics, specs."""

import inspect
import re

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest

from rlcs_jax.verifiers import rule_examples
from rlcs_jax.verifiers import rules
from rlcs_jax.verifiers import scoring

# The 25 instruction ids of IFEval's `instructions_registry.INSTRUCTION_DICT`.
IFEVAL_IDS = {
    "keywords:existence",
    "keywords:frequency",
    "keywords:forbidden_words",
    "keywords:letter_frequency",
    "language:response_language",
    "length_constraints:number_sentences",
    "length_constraints:number_paragraphs",
    "length_constraints:number_words",
    "length_constraints:nth_paragraph_first_word",
    "detectable_content:number_placeholders",
    "detectable_content:postscript",
    "detectable_format:number_bullet_lists",
    "detectable_format:constrained_response",
    "detectable_format:number_highlighted_sections",
    "detectable_format:multiple_sections",
    "detectable_format:json_format",
    "detectable_format:title",
    "combination:two_responses",
    "combination:repeat_prompt",
    "startend:end_checker",
    "startend:quotation",
    "change_case:capital_word_frequency",
    "change_case:english_capital",
    "change_case:english_lowercase",
    "punctuation:no_comma",
}


def test_tables_cover_exactly_the_ifeval_ids():
  assert set(rules.RULES) == IFEVAL_IDS
  assert set(rules.KWARG_TYPES) == IFEVAL_IDS
  assert set(rules.INSTRUCTION_TEXT) == IFEVAL_IDS
  assert set(rule_examples.EXAMPLES) == IFEVAL_IDS


@pytest.mark.parametrize("instruction_id", sorted(IFEVAL_IDS))
def test_rule_signature_matches_kwarg_types(instruction_id):
  params = inspect.signature(rules.RULES[instruction_id]).parameters
  assert list(params)[0] == "response"
  assert set(list(params)[1:]) == set(rules.KWARG_TYPES[instruction_id])


@pytest.mark.parametrize("instruction_id", sorted(rule_examples.EXAMPLES))
def test_examples(instruction_id):
  kwargs, positives, negatives = rule_examples.EXAMPLES[instruction_id]
  assert positives and negatives
  kwargs = rules.validate_kwargs(instruction_id, kwargs)
  rule = rules.RULES[instruction_id]
  for response in positives:
    assert rule(response, **kwargs) is True, response
    assert scoring.check_instruction(instruction_id, kwargs, response)
  for response in negatives:
    assert rule(response, **kwargs) is False, response
    assert not scoring.check_instruction(instruction_id, kwargs, response)


@pytest.mark.parametrize("instruction_id", sorted(rule_examples.EXAMPLES))
def test_describe_renders_one_line(instruction_id):
  kwargs = rule_examples.EXAMPLES[instruction_id][0]
  text = rules.describe(instruction_id, kwargs)
  assert "\n" not in text and "{" not in text and "}" not in text
  # The language is named, not coded; the request is in the prompt itself.
  if instruction_id in (
      "language:response_language",
      "combination:repeat_prompt",
  ):
    return
  for value in kwargs.values():
    for part in value if isinstance(value, list) else [value]:
      assert str(part) in text


def test_describe_examples():
  assert rules.describe(
      "length_constraints:number_words",
      {"relation": "less than", "num_words": 80},
  ) == ("Answer with less than 80 words.")
  assert rules.describe(
      "keywords:existence", {"keywords": ["moon", "tide", "salt"]}
  ) == (
      'Include the following keywords in your response: "moon", "tide"'
      ' and "salt".'
  )
  assert "Japanese" in rules.describe(
      "language:response_language", {"language": "ja"}
  )


@pytest.mark.parametrize(
    "instruction_id, kwargs, fragment",
    [
        ("keywords:nonexistent", {}, "Unknown instruction id"),
        (
            "length_constraints:number_words",
            {"relation": "less than"},
            "missing kwarg 'num_words'",
        ),
        (
            "length_constraints:number_words",
            {"relation": "less than", "num_words": "80"},
            "'num_words' must be",
        ),
        (
            "length_constraints:number_words",
            {"relation": "less than", "num_words": True},
            "'num_words' must be",
        ),
        (
            "length_constraints:number_words",
            {"relation": "less than", "num_words": -1},
            "'num_words' must be",
        ),
        (
            "length_constraints:number_words",
            {"relation": "at most", "num_words": 8},
            "'relation' must be",
        ),
        (
            "length_constraints:number_words",
            {"relation": "less than", "num_words": 8, "num_word": 9},
            "unexpected kwarg 'num_word'",
        ),
        ("keywords:existence", {"keywords": "moon"}, "'keywords' must be"),
        ("keywords:existence", {"keywords": []}, "'keywords' must be"),
        (
            "keywords:existence",
            {"keywords": ["moon", " "]},
            "'keywords' must be",
        ),
        (
            "keywords:letter_frequency",
            {"letter": "ab", "let_frequency": 1, "let_relation": "at least"},
            "'letter' must be",
        ),
        (
            "language:response_language",
            {"language": "xx"},
            "'language' must be",
        ),
        (
            "length_constraints:nth_paragraph_first_word",
            {"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "a"},
            "'nth_paragraph' must be in",
        ),
        (
            "length_constraints:nth_paragraph_first_word",
            {
                "num_paragraphs": 2,
                "nth_paragraph": 1,
                "first_word": "two words",
            },
            "'first_word' must be",
        ),
        ("startend:end_checker", {"end_phrase": "  "}, "'end_phrase' must be"),
        ("punctuation:no_comma", {"extra": 1}, "unexpected kwarg 'extra'"),
        ("punctuation:no_comma", ["not", "a", "dict"], "kwargs must be a dict"),
    ],
)
def test_malformed_specs_raise_naming_id_and_expected(
    instruction_id, kwargs, fragment
):
  with pytest.raises(ValueError) as info:
    rules.validate_kwargs(instruction_id, kwargs)
  message = str(info.value)
  assert fragment in message
  assert instruction_id in message
  assert "expected" in message
  with pytest.raises(ValueError):
    scoring.check_instruction(instruction_id, kwargs, "some response")


def test_expected_kwargs_are_named_in_errors():
  with pytest.raises(ValueError, match=r"'num_words': an int >= 0"):
    rules.validate_kwargs("length_constraints:number_words", {})


def test_validate_drops_none_values_as_in_ifeval_files():
  kwargs = {
      "num_words": 50,
      "relation": "at least",
      "keywords": None,
      "language": None,
  }
  assert rules.validate_kwargs("length_constraints:number_words", kwargs) == {
      "num_words": 50,
      "relation": "at least",
  }
  assert rules.validate_kwargs("punctuation:no_comma", None) == {}


# IFEval semantics beyond the examples table.


def test_relations_are_strict_less_than_and_inclusive_at_least():
  five = "one two three four five"
  words = rules.RULES["length_constraints:number_words"]
  assert not words(five, num_words=5, relation="less than")
  assert words(five, num_words=6, relation="less than")
  assert words(five, num_words=5, relation="at least")
  assert not words(five, num_words=6, relation="at least")


def test_number_words_uses_word_character_runs():
  words = rules.RULES["length_constraints:number_words"]
  # IFEval's RegexpTokenizer(r"\w+"): "it's" and "e-mail" are two words each.
  assert words("it's e-mail", num_words=4, relation="at least")
  assert not words("it's e-mail", num_words=5, relation="at least")


def test_bullets_count_star_and_dash_lines_only():
  bullets = rules.RULES["detectable_format:number_bullet_lists"]
  text = "* a\n- b\n  * c\n** not\n+ not\n1. not\n*\tjust tab\n"
  assert bullets(text, num_bullets=4)


def test_postscript_markers():
  postscript = rules.RULES["detectable_content:postscript"]
  assert postscript("Bye.\nP.P.S. one more", postscript_marker="P.P.S")
  assert postscript("Bye.\np. p. s one more", postscript_marker="P.P.S")
  assert not postscript("Bye.\nP.S. only", postscript_marker="P.P.S")
  # IFEval's P.S. pattern also matches inside "P.P.S.".
  assert postscript("Bye.\nP.P.S. x", postscript_marker="P.S.")
  # Other markers are literal and case-insensitive.
  assert postscript("Bye.\nnote: x", postscript_marker="Note:")
  assert not postscript("Bye.\nNoteX x", postscript_marker="Note.")


def test_json_fences_and_values():
  is_json = rules.RULES["detectable_format:json_format"]
  assert is_json('```JSON\n{"a": 1}\n```')
  assert is_json('  ```Json {"a": 1} ```  ')
  assert is_json("42")
  assert not is_json('```python\n{"a": 1}\n```')
  assert not is_json('{"a": 1}\nThanks!')


def test_english_capital_requires_upper_and_english():
  capital = rules.RULES["change_case:english_capital"]
  assert capital("I LOVE THE SEA AND THE SKY.")
  assert not capital("I LOVE THE SEA AND THE Sky.")
  assert not capital("123")  # No cased character: str.isupper() is False.


def test_two_responses_and_section_rules():
  two = rules.RULES["combination:two_responses"]
  assert two("a\n******\nb\n******")
  assert not two("a\n******\nb\n******\nc")
  sections = rules.RULES["detectable_format:multiple_sections"]
  assert sections(
      "SECTION 1\nx\nSECTION 2\ny\nSECTION 3\nz",
      section_spliter="SECTION",
      num_sections=3,
  )
  assert sections("Day 1 x Day 2 y", section_spliter="Day", num_sections=2)
  assert not sections("Day one x", section_spliter="Day", num_sections=1)


def test_keywords_are_literal_not_regex():
  exists = rules.RULES["keywords:existence"]
  assert exists("I love C++.", keywords=["c++"])
  assert not exists("I love Cpp.", keywords=["c.p"])
  forbidden = rules.RULES["keywords:forbidden_words"]
  assert forbidden("(a)", forbidden_words=["(b)"])


# The linear-time counters agree with IFEval's regular expressions.

_MARKUP = st.text(alphabet=" \t\n*-[]<>ab\r", max_size=60)


@settings(max_examples=400, deadline=None)
@given(_MARKUP)
def test_bullet_count_matches_ifeval_regex(text):
  expected = len(re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE)) + len(
      re.findall(r"^\s*-.*$", text, flags=re.MULTILINE)
  )
  for num_bullets in (expected, expected + 1):
    assert rules.check_number_bullet_lists(text, num_bullets=num_bullets) == (
        num_bullets == expected
    )


@settings(max_examples=400, deadline=None)
@given(_MARKUP)
def test_placeholder_count_matches_ifeval_regex(text):
  expected = len(re.findall(r"\[.*?\]", text))
  assert rules.check_number_placeholders(text, num_placeholders=expected)
  assert not rules.check_number_placeholders(
      text, num_placeholders=expected + 1
  )


@settings(max_examples=400, deadline=None)
@given(_MARKUP)
def test_title_matches_ifeval_regex(text):
  expected = any(
      title.lstrip("<").rstrip(">").strip()
      for title in re.findall(r"<<[^\n]+>>", text)
  )
  assert rules.check_title(text) == expected
