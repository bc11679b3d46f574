"""IFEval constraint rules: one small check function per instruction id.

Owns the rule table (`RULES`), each rule's keyword arguments
(`KWARG_TYPES`), the instruction text used to write prompts
(`INSTRUCTION_TEXT`, rendered by `describe`) and kwargs validation
(`validate_kwargs`). Instruction ids and kwargs names are those of Google's
IFEval (google-research/instruction_following_eval, `instructions_registry`).

A rule is `(response: str, **kwargs) -> bool` on the raw response. The
IFEval conventions that apply to every rule (an empty or whitespace-only
response fails; loose mode tries trimmed variants) live in `scoring.py`.
Rules take validated kwargs; call `validate_kwargs` first (scoring does).

Semantics follow IFEval's `check_following`. Deviations:

* Keywords, forbidden words, postscript markers and section splitters are
  matched literally (`re.escape`); IFEval splices them into regular
  expressions unescaped, which only differs for regex metacharacters.
* Kwargs are never filled at random: IFEval's `build_description` draws a
  random value for a missing or negative number, a missing relation or an
  invalid letter; here those raise `ValueError`.
* `language:response_language`, `change_case:english_capital` and
  `change_case:english_lowercase` detect language offline (`language.py`)
  instead of with `langdetect`; undetectable text counts as followed, as
  IFEval counts a `langdetect` failure.
* `length_constraints:number_sentences` and
  `change_case:capital_word_frequency` tokenize with `text.py` rules
  instead of NLTK models (see there).
* `detectable_format:json_format` returns False where IFEval would crash
  (JSON nested deeper than the recursion limit).
"""

import json
import re
from typing import Any, Callable

# Aliased: `language` is also a kwarg name (IFEval's).
from rlcs_jax.verifiers import language as languages
from rlcs_jax.verifiers import text

RELATIONS = ("less than", "at least")
CONSTRAINED_RESPONSE_OPTIONS = (
    "My answer is yes.",
    "My answer is no.",
    "My answer is maybe.",
)
TWO_RESPONSES_SEPARATOR = "******"
_JSON_FENCES = ("```json", "```Json", "```JSON", "```")
_FIRST_WORD_STOP = frozenset(".,?!'\"")


def _compare(count: int, relation: str, threshold: int) -> bool:
  """Applies an IFEval relation: 'less than' is <, 'at least' is >=."""
  if relation == "less than":
    return count < threshold
  return count >= threshold


def check_keywords_existence(response: str, *, keywords: list[str]) -> bool:
  """Every keyword occurs, case-insensitively, anywhere (even in a word)."""
  return all(
      re.search(re.escape(keyword), response, flags=re.IGNORECASE)
      for keyword in keywords
  )


def check_keywords_frequency(
    response: str, *, keyword: str, frequency: int, relation: str
) -> bool:
  """Counts non-overlapping case-insensitive occurrences of the keyword."""
  count = len(
      re.findall(re.escape(keyword.strip()), response, flags=re.IGNORECASE)
  )
  return _compare(count, relation, frequency)


def check_forbidden_words(response: str, *, forbidden_words: list[str]) -> bool:
  """No forbidden word occurs as a whole word, case-insensitively."""
  return not any(
      re.search(r"\b" + re.escape(word) + r"\b", response, flags=re.IGNORECASE)
      for word in forbidden_words
  )


def check_letter_frequency(
    response: str, *, letter: str, let_frequency: int, let_relation: str
) -> bool:
  """Counts one letter case-insensitively."""
  count = text.count_letter(response, letter.strip())
  return _compare(count, let_relation, let_frequency)


def check_response_language(response: str, *, language: str) -> bool:
  """The detected language is `language`; undetectable text passes."""
  detected = languages.detect_language(response)
  return detected is None or detected == language


def check_number_sentences(
    response: str, *, num_sentences: int, relation: str
) -> bool:
  """Compares the sentence count (rule-based splitter) with a threshold."""
  return _compare(text.count_sentences(response), relation, num_sentences)


def check_number_paragraphs(response: str, *, num_paragraphs: int) -> bool:
  """Exactly `num_paragraphs` non-empty paragraphs between `***` dividers."""
  paragraphs = text.split_markdown_paragraphs(response)
  count = len(paragraphs)
  for index, paragraph in enumerate(paragraphs):
    if not paragraph.strip():
      if index in (0, len(paragraphs) - 1):
        count -= 1
      else:
        return False  # An empty paragraph between two dividers.
  return count == num_paragraphs


def check_number_words(response: str, *, num_words: int, relation: str) -> bool:
  """Compares the `\\w+` word count with a threshold."""
  return _compare(text.count_words(response), relation, num_words)


def check_nth_paragraph_first_word(
    response: str, *, num_paragraphs: int, nth_paragraph: int, first_word: str
) -> bool:
  """`num_paragraphs` blank-line paragraphs; the nth starts with first_word."""
  paragraphs = text.split_blank_line_paragraphs(response)
  count = sum(1 for paragraph in paragraphs if paragraph.strip())
  # As IFEval: the nth raw split (empty ones included) must be non-empty.
  if nth_paragraph > count:
    return False
  paragraph = paragraphs[nth_paragraph - 1].strip()
  if not paragraph:
    return False
  word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
  found = []
  for char in word:
    if char in _FIRST_WORD_STOP:
      break
    found.append(char.lower())
  return (
      count == num_paragraphs and "".join(found) == first_word.strip().lower()
  )


def check_number_placeholders(response: str, *, num_placeholders: int) -> bool:
  """At least `num_placeholders` `[...]` placeholders."""
  return text.count_placeholders(response) >= num_placeholders


def check_postscript(response: str, *, postscript_marker: str) -> bool:
  """The marker occurs anywhere, case-insensitively (IFEval's regex)."""
  marker = postscript_marker.strip()
  if marker == "P.P.S":
    pattern = r"p\.\s?p\.\s?s"
  elif marker == "P.S.":
    pattern = r"p\.\s?s\."
  else:
    pattern = re.escape(marker.lower())
  return re.search(pattern, response.lower()) is not None


def check_number_bullet_lists(response: str, *, num_bullets: int) -> bool:
  """Exactly `num_bullets` lines starting with `*` (not `**`) or `-`."""
  return text.count_bullet_lines(response) == num_bullets


def check_constrained_response(response: str) -> bool:
  """Contains one of the three fixed yes/no/maybe answers."""
  response = response.strip()
  return any(option in response for option in CONSTRAINED_RESPONSE_OPTIONS)


def check_number_highlighted_sections(
    response: str, *, num_highlights: int
) -> bool:
  """At least `num_highlights` non-blank `*...*` or `**...**` spans."""
  count = sum(
      1
      for span in re.findall(r"\*[^\n\*]*\*", response)
      if span.strip("*").strip()
  )
  count += sum(
      1
      for span in re.findall(r"\*\*[^\n\*]*\*\*", response)
      if span.removeprefix("**").removesuffix("**").strip()
  )
  return count >= num_highlights


def check_multiple_sections(
    response: str, *, section_spliter: str, num_sections: int
) -> bool:
  """At least `num_sections` sections headed '<section_spliter> <number>'."""
  pattern = r"\s?" + re.escape(section_spliter.strip()) + r"\s?\d+\s?"
  return len(re.split(pattern, response)) - 1 >= num_sections


def check_json_format(response: str) -> bool:
  """The response, minus a ``` or ```json fence, parses as JSON."""
  value = response.strip()
  for fence in _JSON_FENCES:
    value = value.removeprefix(fence)
  value = value.removesuffix("```").strip()
  try:
    json.loads(value)
  except (ValueError, RecursionError):
    return False
  return True


def check_title(response: str) -> bool:
  """Contains a non-blank title in double angular brackets: <<title>>."""
  return text.has_title(response)


def check_two_responses(response: str) -> bool:
  """Exactly two different non-empty responses separated by `******`."""
  parts = response.split(TWO_RESPONSES_SEPARATOR)
  valid = []
  for index, part in enumerate(parts):
    if part.strip():
      valid.append(part)
    elif index not in (0, len(parts) - 1):
      return False
  return len(valid) == 2 and valid[0].strip() != valid[1].strip()


def check_repeat_prompt(response: str, *, prompt_to_repeat: str) -> bool:
  """Starts with the request, repeated verbatim (case-insensitively)."""
  return response.strip().lower().startswith(prompt_to_repeat.strip().lower())


def check_end_phrase(response: str, *, end_phrase: str) -> bool:
  """Ends with the phrase (case-insensitive, outer `"` and spaces ignored)."""
  value = response.strip().strip('"').lower()
  return value.endswith(end_phrase.strip().lower())


def check_quotation(response: str) -> bool:
  """The stripped response starts and ends with a double quote."""
  value = response.strip()
  return len(value) > 1 and value[0] == '"' and value[-1] == '"'


def check_capital_word_frequency(
    response: str, *, capital_frequency: int, capital_relation: str
) -> bool:
  """Compares the number of all-capital words with a threshold."""
  count = sum(
      1 for token in text.capital_word_tokens(response) if token.isupper()
  )
  return _compare(count, capital_relation, capital_frequency)


def _is_english_or_unknown(response: str) -> bool:
  return languages.detect_language(response) in (None, "en")


def check_english_capital(response: str) -> bool:
  """All cased characters are uppercase and the text is English."""
  return response.isupper() and _is_english_or_unknown(response)


def check_english_lowercase(response: str) -> bool:
  """All cased characters are lowercase and the text is English."""
  return response.islower() and _is_english_or_unknown(response)


def check_no_comma(response: str) -> bool:
  """No ASCII comma anywhere."""
  return "," not in response


RULES: dict[str, Callable[..., bool]] = {
    "keywords:existence": check_keywords_existence,
    "keywords:frequency": check_keywords_frequency,
    "keywords:forbidden_words": check_forbidden_words,
    "keywords:letter_frequency": check_letter_frequency,
    "language:response_language": check_response_language,
    "length_constraints:number_sentences": check_number_sentences,
    "length_constraints:number_paragraphs": check_number_paragraphs,
    "length_constraints:number_words": check_number_words,
    "length_constraints:nth_paragraph_first_word": (
        check_nth_paragraph_first_word
    ),
    "detectable_content:number_placeholders": check_number_placeholders,
    "detectable_content:postscript": check_postscript,
    "detectable_format:number_bullet_lists": check_number_bullet_lists,
    "detectable_format:constrained_response": check_constrained_response,
    "detectable_format:number_highlighted_sections": (
        check_number_highlighted_sections
    ),
    "detectable_format:multiple_sections": check_multiple_sections,
    "detectable_format:json_format": check_json_format,
    "detectable_format:title": check_title,
    "combination:two_responses": check_two_responses,
    "combination:repeat_prompt": check_repeat_prompt,
    "startend:end_checker": check_end_phrase,
    "startend:quotation": check_quotation,
    "change_case:capital_word_frequency": check_capital_word_frequency,
    "change_case:english_capital": check_english_capital,
    "change_case:english_lowercase": check_english_lowercase,
    "punctuation:no_comma": check_no_comma,
}

# Kwargs of each rule, by kind (see `_KINDS`).
KWARG_TYPES: dict[str, dict[str, str]] = {
    "keywords:existence": {"keywords": "words"},
    "keywords:frequency": {
        "keyword": "text",
        "frequency": "count",
        "relation": "relation",
    },
    "keywords:forbidden_words": {"forbidden_words": "words"},
    "keywords:letter_frequency": {
        "letter": "letter",
        "let_frequency": "count",
        "let_relation": "relation",
    },
    "language:response_language": {"language": "language"},
    "length_constraints:number_sentences": {
        "num_sentences": "count",
        "relation": "relation",
    },
    "length_constraints:number_paragraphs": {"num_paragraphs": "count"},
    "length_constraints:number_words": {
        "num_words": "count",
        "relation": "relation",
    },
    "length_constraints:nth_paragraph_first_word": {
        "num_paragraphs": "count",
        "nth_paragraph": "count",
        "first_word": "word",
    },
    "detectable_content:number_placeholders": {"num_placeholders": "count"},
    "detectable_content:postscript": {"postscript_marker": "text"},
    "detectable_format:number_bullet_lists": {"num_bullets": "count"},
    "detectable_format:constrained_response": {},
    "detectable_format:number_highlighted_sections": {
        "num_highlights": "count"
    },
    "detectable_format:multiple_sections": {
        "section_spliter": "text",
        "num_sections": "count",
    },
    "detectable_format:json_format": {},
    "detectable_format:title": {},
    "combination:two_responses": {},
    "combination:repeat_prompt": {"prompt_to_repeat": "text"},
    "startend:end_checker": {"end_phrase": "text"},
    "startend:quotation": {},
    "change_case:capital_word_frequency": {
        "capital_frequency": "count",
        "capital_relation": "relation",
    },
    "change_case:english_capital": {},
    "change_case:english_lowercase": {},
    "punctuation:no_comma": {},
}

# One line of prompt text per rule, IFEval's wording where it has one.
INSTRUCTION_TEXT: dict[str, str] = {
    "keywords:existence": (
        "Include the following keywords in your response: {keywords}."
    ),
    "keywords:frequency": (
        'In your response, the word "{keyword}" should appear {relation}'
        " {frequency} times."
    ),
    "keywords:forbidden_words": (
        "Do not include the following keywords in your response:"
        " {forbidden_words}."
    ),
    "keywords:letter_frequency": (
        'In your response, the letter "{letter}" should appear {let_relation}'
        " {let_frequency} times."
    ),
    "language:response_language": (
        "Your ENTIRE response should be in {language} language, no other"
        " language is allowed."
    ),
    "length_constraints:number_sentences": (
        "Your response should contain {relation} {num_sentences} sentences."
    ),
    "length_constraints:number_paragraphs": (
        "There should be {num_paragraphs} paragraphs. Paragraphs are separated"
        " with the markdown divider: ***"
    ),
    "length_constraints:number_words": (
        "Answer with {relation} {num_words} words."
    ),
    "length_constraints:nth_paragraph_first_word": (
        "There should be {num_paragraphs} paragraphs. Paragraphs and only"
        " paragraphs are separated with each other by two new lines as if it"
        " was '\\n\\n' in python. Paragraph {nth_paragraph} must start with"
        ' word "{first_word}".'
    ),
    "detectable_content:number_placeholders": (
        "The response must contain at least {num_placeholders} placeholders"
        " represented by square brackets, such as [address]."
    ),
    "detectable_content:postscript": (
        "At the end of your response, please explicitly add a postscript"
        " starting with {postscript_marker}"
    ),
    "detectable_format:number_bullet_lists": (
        "Your answer must contain exactly {num_bullets} bullet points. Use the"
        " markdown bullet points such as: * This is point 1."
    ),
    "detectable_format:constrained_response": (
        'Answer with one of the following options: "My answer is yes.", "My'
        ' answer is no.", "My answer is maybe."'
    ),
    "detectable_format:number_highlighted_sections": (
        "Highlight at least {num_highlights} sections in your answer with"
        " markdown, i.e. *highlighted section*."
    ),
    "detectable_format:multiple_sections": (
        "Your response must have {num_sections} sections. Mark the beginning of"
        " each section with {section_spliter} X, such as: {section_spliter} 1."
    ),
    "detectable_format:json_format": (
        "Entire output should be wrapped in JSON format. You can use markdown"
        " ticks such as ```."
    ),
    "detectable_format:title": (
        "Your answer must contain a title, wrapped in double angular brackets,"
        " such as <<poem of joy>>."
    ),
    "combination:two_responses": (
        "Give two different responses. Responses and only responses should be"
        " separated by 6 asterisk symbols: ******."
    ),
    "combination:repeat_prompt": (
        "First repeat the request word for word without change, then give your"
        " answer (1. do not say any words or characters before repeating the"
        " request; 2. the request you need to repeat does not include this"
        " sentence)"
    ),
    "startend:end_checker": (
        'Finish your response with this exact phrase "{end_phrase}". No other'
        " words should follow this phrase."
    ),
    "startend:quotation": (
        "Wrap your entire response with double quotation marks."
    ),
    "change_case:capital_word_frequency": (
        "In your response, words with all capital letters should appear"
        " {capital_relation} {capital_frequency} times."
    ),
    "change_case:english_capital": (
        "Your entire response should be in English, and in all capital letters."
    ),
    "change_case:english_lowercase": (
        "Your entire response should be in English, and in all lowercase"
        " letters. No capital letters are allowed."
    ),
    "punctuation:no_comma": (
        "In your entire response, refrain from the use of any commas."
    ),
}


def _is_count(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_text(value: Any) -> bool:
  return isinstance(value, str) and bool(value.strip())


def _is_words(value: Any) -> bool:
  return (
      isinstance(value, (list, tuple))
      and bool(value)
      and all(_is_text(word) for word in value)
  )


def _is_word(value: Any) -> bool:
  return _is_text(value) and len(value.split()) == 1


def _is_letter(value: Any) -> bool:
  return isinstance(value, str) and len(value) == 1 and not value.isspace()


# Kwarg kinds: (predicate, what the error message says is expected).
_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "count": (_is_count, "an int >= 0"),
    "text": (_is_text, "a non-blank string"),
    "word": (_is_word, "a single word"),
    "words": (_is_words, "a non-empty list of non-blank strings"),
    "letter": (_is_letter, "a single non-space character"),
    "relation": (
        lambda value: isinstance(value, str) and value in RELATIONS,
        f"one of {RELATIONS}",
    ),
    "language": (
        lambda value: isinstance(value, str)
        and value in languages.LANGUAGE_NAMES,
        f"an ISO 639-1 code in {sorted(languages.LANGUAGE_NAMES)}",
    ),
}


def expected_kwargs(instruction_id: str) -> str:
  """Describes the kwargs an instruction takes, for error messages."""
  spec = KWARG_TYPES[instruction_id]
  if not spec:
    return "no kwargs"
  return (
      "{"
      + ", ".join(f"{name!r}: {_KINDS[kind][1]}" for name, kind in spec.items())
      + "}"
  )


def validate_kwargs(
    instruction_id: str, kwargs: dict[str, Any] | None
) -> dict[str, Any]:
  """Checks kwargs for an instruction; returns them with None values dropped.

  Args:
    instruction_id: An IFEval instruction id, a key of `RULES`.
    kwargs: The instruction's kwargs. None values are dropped first, since
      IFEval files list unused keys as null; None itself means no kwargs.

  Returns:
    A new dict of the kwargs the rule takes.

  Raises:
    ValueError: naming the id and the expected kwargs, if the id is unknown
      or a kwarg is missing, unexpected or of the wrong type or value.
  """
  if not isinstance(instruction_id, str) or instruction_id not in RULES:
    raise ValueError(
        f"Unknown instruction id {instruction_id!r}; expected one of "
        f"{sorted(RULES)}."
    )
  if kwargs is None:
    kwargs = {}
  if not isinstance(kwargs, dict):
    raise ValueError(
        f"{instruction_id}: kwargs must be a dict, got "
        f"{type(kwargs).__name__}; expected {expected_kwargs(instruction_id)}."
    )
  kwargs = {name: value for name, value in kwargs.items() if value is not None}
  spec = KWARG_TYPES[instruction_id]
  problems = []
  for name in kwargs:
    if name not in spec:
      problems.append(f"unexpected kwarg {name!r}")
  for name, kind in spec.items():
    predicate, expected = _KINDS[kind]
    if name not in kwargs:
      problems.append(f"missing kwarg {name!r}")
    elif not predicate(kwargs[name]):
      problems.append(f"{name!r} must be {expected}, got {kwargs[name]!r}")
  if (
      instruction_id == "length_constraints:nth_paragraph_first_word"
      and not problems
      and not 1 <= kwargs["nth_paragraph"] <= kwargs["num_paragraphs"]
  ):
    problems.append("'nth_paragraph' must be in [1, num_paragraphs]")
  if problems:
    raise ValueError(
        f"{instruction_id}: {'; '.join(problems)}; expected "
        f"{expected_kwargs(instruction_id)}."
    )
  return kwargs


def _quote_list(words: list[str]) -> str:
  """Renders ["a", "b", "c"] as '"a", "b" and "c"'."""
  quoted = [f'"{word}"' for word in words]
  if len(quoted) == 1:
    return quoted[0]
  return ", ".join(quoted[:-1]) + " and " + quoted[-1]


def describe(instruction_id: str, kwargs: dict[str, Any] | None) -> str:
  """Renders the one-line prompt text that states an instruction."""
  kwargs = validate_kwargs(instruction_id, kwargs)
  values = {}
  for name, kind in KWARG_TYPES[instruction_id].items():
    value = kwargs[name]
    if kind == "words":
      value = _quote_list(value)
    elif kind == "language":
      value = languages.LANGUAGE_NAMES[value]
    elif kind in ("text", "word"):
      value = value.strip()
    values[name] = value
  return INSTRUCTION_TEXT[instruction_id].format(**values)
