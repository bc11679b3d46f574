"""Tests for rlcs_jax.verifiers.ifeval_io: parsing, errors, joins, writes."""

import json
import os

import pytest

from rlcs_jax.verifiers import ifeval_io
from rlcs_jax.verifiers import scoring

GOOD = {
    "key": 1,
    "prompt": "Write a poem. No commas.",
    "instruction_id_list": [
        "punctuation:no_comma",
        "length_constraints:number_words",
    ],
    "kwargs": [{}, {"relation": "less than", "num_words": 40}],
}
# As in IFEval's input_data.jsonl: unused keys are listed as null.
IFEVAL_STYLE = {
    "key": 2,
    "prompt": "Write a haiku.",
    "instruction_id_list": ["detectable_format:title"],
    "kwargs": [{"num_words": None, "relation": None, "keywords": None}],
}


def _write_lines(path, lines):
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return path


def test_round_trip_and_null_kwargs_dropped(tmp_path):
  path = tmp_path / "prompts.jsonl"
  ifeval_io.write_jsonl(path, [GOOD, IFEVAL_STYLE])
  records = ifeval_io.read_prompts(path)
  assert records[0] == GOOD
  assert records[1]["kwargs"] == [{}]
  assert [r["key"] for r in records] == [1, 2]


def test_blank_lines_are_skipped_but_counted(tmp_path):
  path = _write_lines(
      tmp_path / "p.jsonl", [json.dumps(GOOD), "", "   ", "{oops"]
  )
  with pytest.raises(ValueError, match=r"p\.jsonl:4: invalid JSON"):
    ifeval_io.read_prompts(path)


def _with(**changes):
  record = dict(GOOD)
  for name, value in changes.items():
    if value is _DROP:
      del record[name]
    else:
      record[name] = value
  return json.dumps(record)


_DROP = object()


@pytest.mark.parametrize(
    "bad_line, fragment",
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        (_with(key=_DROP), "missing field 'key'; expected an int"),
        (_with(key="7"), "field 'key': expected an int, got str"),
        (_with(key=True), "field 'key': expected an int, got bool"),
        (_with(prompt=_DROP), "missing field 'prompt'"),
        (_with(prompt=3), "field 'prompt': expected a string, got int"),
        (
            _with(instruction_id_list="punctuation:no_comma"),
            "field 'instruction_id_list': expected a list of strings",
        ),
        (_with(kwargs={}), "field 'kwargs': expected a list of dicts"),
        (
            _with(kwargs=[{}]),
            "instruction_id_list has 2 ids but kwargs has 1 entries",
        ),
        (
            _with(instruction_id_list=["punctuation:no_comma", "bogus:rule"]),
            "Unknown instruction id 'bogus:rule'",
        ),
        (
            _with(kwargs=[{}, {"relation": "fewer", "num_words": 4}]),
            "'relation' must be one of",
        ),
        (
            _with(key=100, kwargs=[{}, {"relation": "less than"}]),
            "missing kwarg 'num_words'",
        ),
        (_with(), "duplicate key 1 (first on line 1)"),
    ],
)
def test_malformed_prompt_lines_name_file_and_line(
    tmp_path, bad_line, fragment
):
  path = _write_lines(
      tmp_path / "prompts.jsonl",
      [json.dumps(GOOD), json.dumps(IFEVAL_STYLE), bad_line],
  )
  with pytest.raises(ValueError) as info:
    ifeval_io.read_prompts(path)
  message = str(info.value)
  assert message.startswith(f"{path}:3: ")
  assert fragment in message
  assert "expected" in message


def test_non_utf8_line_names_line(tmp_path):
  path = tmp_path / "bad.jsonl"
  path.write_bytes(json.dumps(GOOD).encode() + b"\n\xff\xfe\n")
  with pytest.raises(ValueError, match=r"bad\.jsonl:2: not UTF-8"):
    ifeval_io.read_prompts(path)


def test_bom_is_accepted(tmp_path):
  path = tmp_path / "bom.jsonl"
  path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n")
  assert ifeval_io.read_prompts(path)[0]["key"] == 1


@pytest.mark.parametrize(
    "bad_line, fragment",
    [
        ('{"prompt": "p"}', "missing field 'response'; expected a string"),
        (
            '{"prompt": "p", "response": null}',
            "field 'response': expected a string, got NoneType",
        ),
        ('{"response": "r"}', "missing field 'prompt'"),
        ('"just a string"', "expected a JSON object, got str"),
    ],
)
def test_malformed_response_lines(tmp_path, bad_line, fragment):
  path = _write_lines(
      tmp_path / "responses.jsonl",
      ['{"prompt": "a", "response": "b"}', bad_line],
  )
  with pytest.raises(ValueError) as info:
    ifeval_io.read_responses(path)
  assert str(info.value).startswith(f"{path}:2: ")
  assert fragment in str(info.value)


def test_join_and_evaluate(tmp_path):
  prompts_path = tmp_path / "input.jsonl"
  responses_path = tmp_path / "responses.jsonl"
  ifeval_io.write_jsonl(prompts_path, [GOOD, IFEVAL_STYLE])
  ifeval_io.write_jsonl(
      responses_path,
      [
          {"prompt": IFEVAL_STYLE["prompt"], "response": "<<Dusk>> quiet"},
          {"prompt": GOOD["prompt"], "response": "Short and sweet"},
      ],
  )
  joined = ifeval_io.join_responses(
      ifeval_io.read_prompts(prompts_path),
      ifeval_io.read_responses(responses_path),
  )
  assert [r["key"] for r in joined] == [1, 2]
  assert joined[0]["response"] == "Short and sweet"
  result = scoring.evaluate(joined)
  assert result["strict"]["prompt_accuracy"] == 1.0


def test_join_missing_and_conflicting_responses():
  prompts = [
      dict(GOOD, kwargs=[{}, {"relation": "less than", "num_words": 40}])
  ]
  with pytest.raises(ValueError, match="No response for prompt key 1"):
    ifeval_io.join_responses(prompts, [])
  assert ifeval_io.join_responses(prompts, [], skip_missing=True) == []
  twice = [
      {"prompt": GOOD["prompt"], "response": "a"},
      {"prompt": GOOD["prompt"], "response": "b"},
  ]
  with pytest.raises(ValueError, match="Two different responses"):
    ifeval_io.join_responses(prompts, twice)


def test_write_jsonl_is_atomic(tmp_path):
  path = tmp_path / "sub" / "out.jsonl"
  ifeval_io.write_jsonl(path, [{"a": "é"}])
  assert path.read_text(encoding="utf-8") == '{"a": "é"}\n'
  with pytest.raises(TypeError):
    ifeval_io.write_jsonl(path, [{"a": 1}, {"b": object()}])
  # The old file is intact and no temporary file is left behind.
  assert path.read_text(encoding="utf-8") == '{"a": "é"}\n'
  assert os.listdir(path.parent) == ["out.jsonl"]
