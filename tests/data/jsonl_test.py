"""JSONL schemas, line-numbered errors, TFDS array_record builders, grain."""

import json

import numpy as np
import pytest

from rlcs_jax.data import builders
from rlcs_jax.data import jsonl
from rlcs_jax.data import pipeline
from rlcs_jax import tokenizer as tok_lib


def _sft(n):
  return [
      {
          "id": f"r{i}",
          "prompt": f"prompt {i}",
          "response": f"resp {i}",
          "context": {"i": i},
      }
      for i in range(n)
  ]


def _write_lines(path, lines):
  path.write_text("".join(l + "\n" for l in lines), encoding="utf-8")
  return str(path)


@pytest.mark.parametrize(
    "line,match",
    [
        ('{"id": "2", "prompt": "p"', r"bad\.jsonl:2: invalid JSON"),
        (
            '{"id": "2", "prompt": "p"}',
            r"bad\.jsonl:2: missing required field " r"'response'",
        ),
        (
            '{"id": 2, "prompt": "p", "response": "r"}',
            r"bad\.jsonl:2: field 'id'"
            r" of a 'sft' record must be str, got int",
        ),
        ("[1, 2]", r"bad\.jsonl:2: expected a JSON object"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, match):
  good = json.dumps(_sft(1)[0])
  path = _write_lines(tmp_path / "bad.jsonl", [good, line, good])
  with pytest.raises(jsonl.DataError, match=match):
    jsonl.read_jsonl(path, "sft")


def test_schema_specific_checks(tmp_path):
  pair = {
      "id": "p",
      "prompt": "c",
      "response_1": "a",
      "response_2": "b",
      "label": 3,
  }
  path = _write_lines(tmp_path / "pairs.jsonl", [json.dumps(pair)])
  with pytest.raises(jsonl.DataError, match=r"pairs\.jsonl:1: .*1 or 2"):
    jsonl.read_jsonl(path, "pairs")
  ife = {
      "key": 1,
      "prompt": "p",
      "instruction_id_list": ["a", "b"],
      "kwargs": [{}],
  }
  path = _write_lines(tmp_path / "ife.jsonl", [json.dumps(ife)])
  with pytest.raises(jsonl.DataError, match="'kwargs' has 1 entries"):
    jsonl.read_jsonl(path, "ifeval")


def test_empty_split_is_an_error(tmp_path):
  path = _write_lines(tmp_path / "empty.jsonl", [])
  with pytest.raises(jsonl.DataError, match="empty split"):
    jsonl.read_jsonl(path, "sft")
  with pytest.raises(jsonl.DataError, match="empty split"):
    builders.build("sft", {"train": path}, str(tmp_path / "tfds"))


def test_atomic_write_leaves_no_partial_file(tmp_path):
  path = tmp_path / "out.jsonl"

  def records():
    yield {"a": 1}
    raise RuntimeError("boom")

  with pytest.raises(RuntimeError):
    jsonl.write_jsonl(str(path), records())
  assert not path.exists() and not list(tmp_path.iterdir())


def test_builder_round_trip_and_reuse(tmp_path):
  path = jsonl.write_jsonl(str(tmp_path / "sft.jsonl"), _sft(30))
  src = builders.build("sft", {"train": path}, str(tmp_path / "tfds"))["train"]
  assert len(src) == 30
  got = sorted(
      (builders.decode_record("sft", src[i]) for i in range(30)),
      key=lambda r: int(r["id"][1:]),
  )
  assert got == _sft(30)
  # Same file: the prepared dataset is reused (same fingerprint dir).
  before = sorted(p.name for p in (tmp_path / "tfds" / "sft_jsonl").iterdir())
  builders.build("sft", {"train": path}, str(tmp_path / "tfds"))
  after = sorted(p.name for p in (tmp_path / "tfds" / "sft_jsonl").iterdir())
  assert before == after


def test_grain_iterator_state_resumes_exactly(tmp_path):
  path = jsonl.write_jsonl(str(tmp_path / "sft.jsonl"), _sft(20))
  src = builders.build("sft", {"train": path}, str(tmp_path / "tfds"))["train"]
  ids = lambda b: [r["id"] for r in b]
  it = pipeline.records_iterator(src, "sft", batch_size=4, seed=3)
  first = [ids(next(it)) for _ in range(3)]
  state = it.get_state()
  rest = [ids(next(it)) for _ in range(6)]  # Crosses an epoch boundary.
  it2 = pipeline.records_iterator(src, "sft", batch_size=4, seed=3)
  it2.set_state(state)
  assert [ids(next(it2)) for _ in range(6)] == rest
  assert first[0] != rest[2]  # Epoch 2 is reshuffled.


def test_sft_featurizer_masks_prompt(tmp_path):
  texts = [f"prompt {i} resp {i}" for i in range(200)]
  tok = tok_lib.SentencePieceTokenizer(
      tok_lib.train_sentencepiece(
          texts + [tok_lib.PLAIN_RESPONSE_MARKER],
          str(tmp_path / "sp"),
          vocab_size=320,
      )
  )
  feat = pipeline.SftFeaturizer(tok, 40)
  raw = {
      "id": "a",
      "prompt": "prompt 1",
      "response": "resp 1",
      "context": "null",
  }
  out = feat(raw)
  prompt = tok.encode_prompt("prompt 1")
  target_ids = out["tokens"][1:][out["loss_mask"][:-1] > 0]
  assert tok.decode(target_ids) == "resp 1"
  assert target_ids[-1] == tok.eos_id
  assert out["valid"].sum() == len(prompt) + len(tok.encode("resp 1")) + 1
  with pytest.raises(pipeline.PromptTooLongError, match="record 'a'"):
    pipeline.SftFeaturizer(tok, 4)(raw)
  assert np.all(out["tokens"][~out["valid"]] == tok.pad_id)
