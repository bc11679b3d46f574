"""ifeval_eval job: scoring a responses file, reports, malformed input."""

import json
import os
import subprocess
import sys

import pytest

from configs import rlmr_tiny
from rlcs_jax.eval import ifeval
from rlcs_jax.verifiers import ifeval_io

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))

PROMPTS = [
    {
        "key": 1,
        "prompt": "Write a poem. Do not use commas.",
        "instruction_id_list": ["punctuation:no_comma"],
        "kwargs": [{}],
    },
    {
        "key": 2,
        "prompt": "Write a night poem in lowercase with a title.",
        "instruction_id_list": [
            "change_case:english_lowercase",
            "detectable_format:title",
        ],
        "kwargs": [{}, {}],
    },
    {
        "key": 3,
        "prompt": "Write a list. Do not use commas.",
        "instruction_id_list": ["punctuation:no_comma"],
        "kwargs": [None],
    },
]
RESPONSES = [
    # Follows its instruction.
    {"prompt": PROMPTS[0]["prompt"], "response": "roses are red and blue"},
    # Title ok; one capital in the last line fails lowercase strictly, but
    # loose mode also tries the response without its last line.
    {"prompt": PROMPTS[1]["prompt"], "response": "<<night>>\nthe moon is Big"},
    {"prompt": PROMPTS[2]["prompt"], "response": "a, b"},  # A comma.
    {"prompt": "not a prompt of the file", "response": "ignored"},
]


def _files(tmp_path, prompts=PROMPTS, responses=RESPONSES):
  p, r = tmp_path / "prompts.jsonl", tmp_path / "responses.jsonl"
  ifeval_io.write_jsonl(p, prompts)
  ifeval_io.write_jsonl(r, responses)
  return str(p), str(r)


def _config(prompts, responses, **eval_overrides):
  c = rlmr_tiny.get_config("test")
  c.unlock()
  c.job = "ifeval_eval"
  c.eval.update(dict(prompts=prompts, responses=responses, **eval_overrides))
  c.lock()
  return c


def test_job_scores_and_writes_reports(tmp_path, capsys):
  prompts, responses = _files(tmp_path)
  wd = str(tmp_path / "w")
  ifeval.ifeval_eval_job(_config(prompts, responses), wd)
  with open(os.path.join(wd, ifeval.METRICS_JSON)) as f:
    m = json.load(f)
  assert m["num_prompts"] == 3 and m["num_instructions"] == 4
  assert m["unmatched_responses"] == 1
  assert ifeval.headline(m) == pytest.approx(
      {
          "prompt_strict": 1 / 3,
          "instruction_strict": 2 / 4,
          "prompt_loose": 2 / 3,
          "instruction_loose": 3 / 4,
      }
  )
  assert m["strict"]["per_instruction"] == {
      "change_case:english_lowercase": 0.0,
      "detectable_format:title": 1.0,
      "punctuation:no_comma": 0.5,
  }
  assert m["loose"]["per_instruction"]["change_case:english_lowercase"] == 1.0
  with open(os.path.join(wd, ifeval.METRICS_MD)) as f:
    table = f.read()
  assert "| prompt | 0.333 (1/3) | 0.667 (2/3) |" in table
  assert "| instruction | 0.500 (2/4) | 0.750 (3/4) |" in table
  assert "| punctuation:no_comma | 2 | 0.500 | 0.500 |" in table
  assert table in capsys.readouterr().out


def test_missing_responses(tmp_path):
  prompts, responses = _files(tmp_path, responses=RESPONSES[:2])
  with pytest.raises(
      ValueError, match=r"responses\.jsonl: No response for " r"prompt key 3"
  ):
    ifeval.score_files(prompts, responses)
  m = ifeval.score_files(prompts, responses, skip_missing=True)
  assert m["num_prompts"] == 2
  with pytest.raises(ValueError, match="eval.responses"):
    ifeval.ifeval_eval_job(_config(prompts, ""), str(tmp_path / "w"))
  _, none_match = _files(tmp_path, responses=RESPONSES[3:])
  with pytest.raises(ValueError, match="no response matches"):
    ifeval.score_files(prompts, none_match, skip_missing=True)


@pytest.mark.parametrize(
    "which, line, match",
    [
        (
            "prompts",
            '{"key": 1, "prompt": "x"',
            r"prompts\.jsonl:2: invalid JSON",
        ),
        (
            "prompts",
            '{"key": 9, "prompt": "x", "instruction_id_list": '
            '["no:such_rule"], "kwargs": [{}]}',
            r"prompts\.jsonl:2: .*no:such_rule",
        ),
        (
            "prompts",
            '{"key": 9, "prompt": "x", "instruction_id_list": '
            '["punctuation:no_comma"], "kwargs": []}',
            r"prompts\.jsonl:2: .*kwargs",
        ),
        (
            "responses",
            '{"prompt": "x"}',
            r"responses\.jsonl:2: missing field " "'response'",
        ),
        (
            "responses",
            '["prompt", "response"]',
            r"responses\.jsonl:2: expected a " "JSON object",
        ),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, which, line, match):
  prompts, responses = _files(tmp_path)
  path = prompts if which == "prompts" else responses
  with open(path, encoding="utf-8") as f:
    first = f.readline()
  with open(path, "w", encoding="utf-8") as f:
    f.write(first + line + "\n")
  with pytest.raises(ValueError, match=match):
    ifeval.score_files(prompts, responses, skip_missing=True)


def test_cli(tmp_path):
  prompts, responses = _files(tmp_path)
  wd = str(tmp_path / "cli")
  out = subprocess.run(
      [
          sys.executable,
          "-m",
          "rlcs_jax.main",
          "--config",
          os.path.join(ROOT, "configs", "rlmr_tiny.py"),
          "--config.job=ifeval_eval",
          f"--config.eval.prompts={prompts}",
          f"--config.eval.responses={responses}",
          "--workdir",
          wd,
      ],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
      env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert "| prompt | 0.333 (1/3) | 0.667 (2/3) |" in out.stdout
  assert os.path.exists(os.path.join(wd, ifeval.METRICS_JSON))
