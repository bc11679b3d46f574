"""Tests for rlcs_jax.verifiers.scoring: modes, violations, metrics, fuzz."""

import time

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest

from rlcs_jax.verifiers import rule_examples
from rlcs_jax.verifiers import rules
from rlcs_jax.verifiers import scoring

NO_COMMA = "punctuation:no_comma"
WORDS = "length_constraints:number_words"
TITLE = "detectable_format:title"
END = "startend:end_checker"
LOWER = "change_case:english_lowercase"


def test_preamble_fails_strict_passes_loose():
  response = (
      "Sure, here is your poem:\n<<tide>>\nthe sea is calm tonight\n"
      "and the moon is low"
  )
  assert not scoring.check_instruction(NO_COMMA, {}, response)
  assert scoring.check_instruction(NO_COMMA, {}, response, mode="loose")
  assert not scoring.check_instruction(LOWER, {}, response)
  assert scoring.check_instruction(LOWER, {}, response, mode="loose")


def test_trailing_line_and_markdown_stars_pass_loose_only():
  kwargs = {"end_phrase": "The end."}
  closing = "Once upon a time. The end.\nLet me know if you want changes!"
  assert not scoring.check_instruction(END, kwargs, closing)
  assert scoring.check_instruction(END, kwargs, closing, mode="loose")
  bold = "Once upon a time. **The end.**"
  assert not scoring.check_instruction(END, kwargs, bold)
  assert scoring.check_instruction(END, kwargs, bold, mode="loose")


def test_loose_variants_are_ifevals_eight():
  variants = scoring.loose_variants("a*\nb\n*c")
  assert variants == [
      "a*\nb\n*c",
      "b\n*c",
      "a*\nb",
      "b",
      "a\nb\nc",
      "b\nc",
      "a\nb",
      "b",
  ]


def test_loose_never_fails_what_strict_passes():
  for instruction_id, (kwargs, positives, _) in rule_examples.EXAMPLES.items():
    for response in positives:
      assert scoring.check_instruction(
          instruction_id, kwargs, response, mode="loose"
      ), instruction_id


@pytest.mark.parametrize("response", ["", "   \n\t "])
@pytest.mark.parametrize("mode", scoring.MODES)
def test_blank_response_fails_every_instruction(response, mode):
  for instruction_id, (kwargs, _, _) in rule_examples.EXAMPLES.items():
    assert not scoring.check_instruction(
        instruction_id, kwargs, response, mode=mode
    ), instruction_id


def test_repeat_prompt_can_take_the_request_from_the_prompt():
  request = "Write a haiku about frogs."
  prompt = (
      request
      + " "
      + rules.describe(
          "combination:repeat_prompt", {"prompt_to_repeat": request}
      )
  )
  response = "Write a haiku about frogs.\nGreen leap, one splash."
  assert scoring.check_instruction(
      "combination:repeat_prompt", {}, response, prompt=prompt
  )
  assert not scoring.check_instruction(
      "combination:repeat_prompt", {}, "Frogs.", prompt=prompt
  )
  with pytest.raises(ValueError, match="prompt_to_repeat"):
    scoring.check_instruction("combination:repeat_prompt", {}, response)


def test_check_prompt_and_violation():
  ids = [NO_COMMA, WORDS, TITLE]
  kwargs = [{}, {"relation": "less than", "num_words": 5}, {}]
  response = "<<Rain>> it falls, softly"  # Has a comma; 4 words; a title.
  assert scoring.check_prompt(ids, kwargs, response) == [False, True, True]
  assert scoring.violation(ids, kwargs, response) == 1.0
  assert scoring.violation(ids, kwargs, response, kind="fraction") == (
      pytest.approx(1 / 3)
  )
  assert scoring.violation(ids, kwargs, "<<Rain>> it falls") == 0.0
  assert scoring.violation([], [], "anything") == 0.0
  assert scoring.violation([], [], "anything", kind="fraction") == 0.0
  assert scoring.violation([NO_COMMA], [{}], "", kind="fraction") == 1.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: scoring.check_prompt([NO_COMMA], [], "x"),
        lambda: scoring.check_prompt(NO_COMMA, [{}], "x"),
        lambda: scoring.check_instruction(NO_COMMA, {}, "x", mode="lenient"),
        lambda: scoring.violation([NO_COMMA], [{}], "x", kind="all"),
        lambda: scoring.check_instruction(NO_COMMA, {}, None),
        lambda: scoring.evaluate([{"instruction_id_list": [], "kwargs": []}]),
    ],
)
def test_malformed_calls_raise(call):
  with pytest.raises(ValueError):
    call()


def test_evaluate_hand_computed():
  records = [
      # Strict: [T, T]; loose: [T, T].
      {
          "prompt": "p1",
          "instruction_id_list": [NO_COMMA, TITLE],
          "kwargs": [{}, {}],
          "response": "<<A>> no commas",
      },
      # Strict: [F]; loose: [T] (the comma is on the first line).
      {
          "prompt": "p2",
          "instruction_id_list": [NO_COMMA],
          "kwargs": [{}],
          "response": "Sure, here:\nno commas",
      },
      # Strict: [F, F]; loose: [F, T] ("**" hides the end phrase).
      {
          "prompt": "p3",
          "instruction_id_list": [TITLE, END],
          "kwargs": [None, {"end_phrase": "bye", "language": None}],
          "response": "no title **bye**",
      },
      # No instructions: followed at prompt level.
      {
          "prompt": "p4",
          "instruction_id_list": [],
          "kwargs": [],
          "response": "anything",
      },
  ]
  result = scoring.evaluate(records)
  assert result["num_prompts"] == 4
  assert result["num_instructions"] == 5
  assert result["instruction_counts"] == {NO_COMMA: 2, TITLE: 2, END: 1}
  assert result["category_counts"] == {
      "detectable_format": 2,
      "punctuation": 2,
      "startend": 1,
  }
  strict, loose = result["strict"], result["loose"]
  assert strict["prompt_correct"] == 2  # p1, p4.
  assert strict["prompt_accuracy"] == 0.5
  assert strict["instruction_correct"] == 2
  assert strict["instruction_accuracy"] == pytest.approx(2 / 5)
  assert strict["per_instruction"] == {NO_COMMA: 0.5, TITLE: 0.5, END: 0.0}
  assert strict["per_category"] == {
      "detectable_format": 0.5,
      "punctuation": 0.5,
      "startend": 0.0,
  }
  assert loose["prompt_correct"] == 3  # p1, p2, p4.
  assert loose["prompt_accuracy"] == 0.75
  assert loose["instruction_correct"] == 4
  assert loose["instruction_accuracy"] == pytest.approx(4 / 5)
  assert loose["per_instruction"] == {NO_COMMA: 1.0, TITLE: 0.5, END: 1.0}
  assert set(scoring.evaluate(records, modes=("loose",))) == {
      "num_prompts",
      "num_instructions",
      "instruction_counts",
      "category_counts",
      "loose",
  }
  empty = scoring.evaluate([])
  assert empty["num_prompts"] == 0
  assert empty["strict"]["prompt_accuracy"] == 0.0


def test_evaluate_names_the_bad_record():
  records = [
      {
          "prompt": "p",
          "instruction_id_list": ["bogus:id"],
          "kwargs": [{}],
          "response": "r",
      }
  ]
  with pytest.raises(ValueError, match=r"record 0: Unknown instruction id"):
    scoring.evaluate(records)


UNICODE_RESPONSES = [
    "🎉🎉🎉 party time 🎈, with emoji",
    "我们今天去公园散步，天气很好。然后回家了。",
    "東京は美しい都市です。<<タイトル>>",
    "cafe\u0301 nai\u0308ve re\u0301sume\u0301 Z\u0335\u0321a\u0336lgo",
    "مرحبا بالعالم، هذا نص عربي. *مهم*",
    "שלום עולם, זה טקסט בעברית.",
    "\u202eRTL override\u202c and \u200bzero\u200dwidth",
    "\x00\x01\x7f control \ud7ff \U0010ffff",
    "ǅ ǈ titlecase Σίσυφος ΣΊΣΥΦΟΣ ß ẞ İstanbul",
]


@pytest.mark.parametrize("response", UNICODE_RESPONSES)
def test_unicode_never_raises(response):
  for instruction_id, (kwargs, _, _) in rule_examples.EXAMPLES.items():
    for mode in scoring.MODES:
      result = scoring.check_instruction(
          instruction_id, kwargs, response, mode=mode
      )
      assert isinstance(result, bool)


def test_unicode_semantics():
  assert scoring.check_instruction(NO_COMMA, {}, UNICODE_RESPONSES[1])
  assert not scoring.check_instruction(LOWER, {}, UNICODE_RESPONSES[1])
  assert scoring.check_instruction(TITLE, {}, UNICODE_RESPONSES[2])
  assert scoring.check_instruction(
      "language:response_language", {"language": "ja"}, UNICODE_RESPONSES[2]
  )
  assert scoring.check_instruction(
      "language:response_language", {"language": "he"}, UNICODE_RESPONSES[5]
  )


def test_very_long_response_is_fast():
  paragraph = (
      "The old lighthouse keeper, Mr. Abernathy, climbed 3.5 flights "
      "at 6 p.m. each night... *slowly* [name] <<Light>> P.S. ok\n"
  )
  response = (paragraph * (200_000 // len(paragraph) + 1))[:200_000]
  start = time.perf_counter()
  for instruction_id, (kwargs, _, _) in rule_examples.EXAMPLES.items():
    for mode in scoring.MODES:
      scoring.check_instruction(instruction_id, kwargs, response, mode=mode)
  assert time.perf_counter() - start < 10.0


# Fuzz: any text, every rule, both modes: a bool, quickly.

_FUZZ_TEXT = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=" \n\t*-[]<>.!?,\"'#`{}PS0123456789aZé中😀", max_size=300),
    # Long repetitive text: the inputs that make naive regexes quadratic.
    st.builds(
        lambda unit, n: (unit * n)[:10_000],
        st.text(min_size=1, max_size=4),
        st.integers(1, 10_000),
    ),
)


@pytest.mark.parametrize("instruction_id", sorted(rule_examples.EXAMPLES))
def test_fuzz_rule_never_raises_and_is_fast(instruction_id):
  kwargs = rule_examples.EXAMPLES[instruction_id][0]

  @settings(max_examples=25, deadline=None, database=None)
  @given(_FUZZ_TEXT)
  def run(response):
    for mode in scoring.MODES:
      start = time.perf_counter()
      result = scoring.check_instruction(
          instruction_id, kwargs, response, mode=mode
      )
      assert time.perf_counter() - start < 0.5
      assert isinstance(result, bool)

  run()
