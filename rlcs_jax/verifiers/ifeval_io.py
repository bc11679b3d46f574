"""IFEval JSONL files: reading prompts and responses, joining, writing.

Owns the file formats of google-research/instruction_following_eval:

* prompts, one JSON object per line: `key` (int), `prompt` (str),
  `instruction_id_list` (list of ids) and `kwargs` (a list of dicts
  parallel to the ids; IFEval's own file lists unused keys as null, and
  those null values are dropped);
* responses, one JSON object per line: `prompt` (str) and `response` (str).

Every malformed line raises `ValueError` with the file path, the 1-based
line number and what was expected. Blank lines are skipped. Writes are
atomic: a temporary file in the same directory, then a rename.
"""

from collections.abc import Iterable, Iterator
import json
import os
import pathlib
import tempfile
from typing import Any

from rlcs_jax.verifiers import rules

PathLike = str | os.PathLike[str]

# The bundled creative-writing prompts (IFEval format).
CREATIVE_PROMPTS_PATH = (
    pathlib.Path(__file__).resolve().parent.parent
    / "data"
    / "assets"
    / "creative_prompts.jsonl"
)


def _line_error(path: PathLike, lineno: int, message: str) -> ValueError:
  return ValueError(f"{os.fspath(path)}:{lineno}: {message}")


def _json_lines(path: PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
  """Yields (1-based line number, object) for each non-blank line."""
  with open(path, "rb") as f:
    for lineno, raw in enumerate(f, start=1):
      try:
        line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
      except UnicodeDecodeError as e:
        raise _line_error(path, lineno, f"not UTF-8 ({e.reason}).") from e
      if not line.strip():
        continue
      try:
        value = json.loads(line)
      except json.JSONDecodeError as e:
        raise _line_error(
            path,
            lineno,
            f"invalid JSON ({e.msg} at column {e.colno}); expected one JSON "
            "object per line.",
        ) from e
      if not isinstance(value, dict):
        raise _line_error(
            path, lineno, f"expected a JSON object, got {type(value).__name__}."
        )
      yield lineno, value


def _field(
    path: PathLike, lineno: int, value: dict[str, Any], name: str, expected: str
) -> Any:
  if name not in value:
    raise _line_error(
        path, lineno, f"missing field {name!r}; expected {expected}."
    )
  return value[name]


def _type_error(
    path: PathLike, lineno: int, name: str, expected: str, got: Any
) -> ValueError:
  return _line_error(
      path,
      lineno,
      f"field {name!r}: expected {expected}, got {type(got).__name__} "
      f"{got!r:.80}.",
  )


def _parse_prompt(
    path: PathLike, lineno: int, value: dict[str, Any]
) -> dict[str, Any]:
  """Validates one prompt line; returns the record with kwargs cleaned."""
  key = _field(path, lineno, value, "key", "an int")
  if not isinstance(key, int) or isinstance(key, bool):
    raise _type_error(path, lineno, "key", "an int", key)
  prompt = _field(path, lineno, value, "prompt", "a string")
  if not isinstance(prompt, str):
    raise _type_error(path, lineno, "prompt", "a string", prompt)
  ids = _field(
      path, lineno, value, "instruction_id_list", "a list of instruction ids"
  )
  if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
    raise _type_error(
        path, lineno, "instruction_id_list", "a list of strings", ids
    )
  kwargs_list = _field(
      path, lineno, value, "kwargs", "a list of dicts, one per instruction id"
  )
  if not isinstance(kwargs_list, list) or not all(
      kwargs is None or isinstance(kwargs, dict) for kwargs in kwargs_list
  ):
    raise _type_error(
        path,
        lineno,
        "kwargs",
        "a list of dicts, one per instruction id",
        kwargs_list,
    )
  if len(ids) != len(kwargs_list):
    raise _line_error(
        path,
        lineno,
        f"instruction_id_list has {len(ids)} ids but kwargs has "
        f"{len(kwargs_list)} entries; expected one kwargs dict per id.",
    )
  cleaned = []
  for instruction_id, kwargs in zip(ids, kwargs_list):
    try:
      cleaned.append(rules.validate_kwargs(instruction_id, kwargs))
    except ValueError as e:
      raise _line_error(path, lineno, str(e)) from e
  return {
      "key": key,
      "prompt": prompt,
      "instruction_id_list": list(ids),
      "kwargs": cleaned,
  }


def read_prompts(path: PathLike) -> list[dict[str, Any]]:
  """Reads an IFEval prompts file; validates every id and its kwargs."""
  records = []
  key_lines: dict[int, int] = {}
  for lineno, value in _json_lines(path):
    record = _parse_prompt(path, lineno, value)
    if record["key"] in key_lines:
      raise _line_error(
          path,
          lineno,
          f"duplicate key {record['key']} (first on line "
          f"{key_lines[record['key']]}); expected unique keys.",
      )
    key_lines[record["key"]] = lineno
    records.append(record)
  return records


def read_responses(path: PathLike) -> list[dict[str, str]]:
  """Reads an IFEval responses file of {"prompt": ..., "response": ...}."""
  records = []
  for lineno, value in _json_lines(path):
    record = {}
    for name in ("prompt", "response"):
      field = _field(path, lineno, value, name, "a string")
      if not isinstance(field, str):
        raise _type_error(path, lineno, name, "a string", field)
      record[name] = field
    records.append(record)
  return records


def join_responses(
    prompts: Iterable[dict[str, Any]],
    responses: Iterable[dict[str, str]],
    *,
    skip_missing: bool = False,
) -> list[dict[str, Any]]:
  """Attaches each prompt's response, matched by exact prompt text.

  Args:
    prompts: Records from `read_prompts`.
    responses: Records from `read_responses`.
    skip_missing: Drop prompts without a response instead of raising.

  Returns:
    The prompt records, each with a `response` field, in prompt order.

  Raises:
    ValueError: if a prompt has no response (unless `skip_missing`), or two
      different responses share a prompt.
  """
  by_prompt: dict[str, str] = {}
  for record in responses:
    prompt, response = record["prompt"], record["response"]
    if by_prompt.get(prompt, response) != response:
      raise ValueError(
          f"Two different responses for prompt {prompt[:80]!r}; expected "
          "one response per prompt."
      )
    by_prompt[prompt] = response
  joined = []
  for record in prompts:
    if record["prompt"] not in by_prompt:
      if skip_missing:
        continue
      raise ValueError(
          f"No response for prompt key {record.get('key')!r} "
          f"({record['prompt'][:80]!r}); expected a response line with the "
          "exact prompt text."
      )
    joined.append({**record, "response": by_prompt[record["prompt"]]})
  return joined


def write_jsonl(path: PathLike, records: Iterable[dict[str, Any]]) -> None:
  """Writes one JSON object per line, atomically (temp file, then rename)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp_name = tempfile.mkstemp(
      dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
  )
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      for record in records:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp_name, 0o644)  # mkstemp makes the file private.
    os.replace(tmp_name, path)
  except BaseException:
    if os.path.exists(tmp_name):
      os.remove(tmp_name)
    raise
