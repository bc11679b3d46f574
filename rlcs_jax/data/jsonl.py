"""JSONL schemas of every dataset kind, and strict line-numbered reading.

A schema maps each field to (type, required). Types: `str`, `int`, `float`,
`json` (any JSON value: dicts and lists such as a story `context` or IFEval
`kwargs`; stored as a JSON string in the TFDS datasets). Every malformed line
raises `DataError` naming the file, the 1-based line number and what was
expected; nothing is silently skipped.

Kinds (the README's "Data formats" section documents them for users):
  sft:      id, prompt, response                      [+ context]
  pairs:    id, prompt, response_1, response_2, label (1|2: the better one)
            [+ teacher_12, teacher_21: judge reasoning for each order, context]
  contexts: id, prompt                                 [+ reference, context]
  ifeval:   key, prompt, instruction_id_list, kwargs   [+ id, context]
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Iterable, Iterator

SCHEMAS: dict[str, dict[str, tuple[str, bool]]] = {
    "sft": {
        "id": ("str", True),
        "prompt": ("str", True),
        "response": ("str", True),
        "context": ("json", False),
    },
    "pairs": {
        "id": ("str", True),
        "prompt": ("str", True),
        "response_1": ("str", True),
        "response_2": ("str", True),
        "label": ("int", True),
        "teacher_12": ("str", False),
        "teacher_21": ("str", False),
        "context": ("json", False),
    },
    "contexts": {
        "id": ("str", True),
        "prompt": ("str", True),
        "reference": ("str", False),
        "context": ("json", False),
    },
    "ifeval": {
        "key": ("int", True),
        "prompt": ("str", True),
        "instruction_id_list": ("json", True),
        "kwargs": ("json", True),
        "id": ("str", False),
        "context": ("json", False),
    },
}

_DEFAULTS = {"str": "", "int": 0, "float": 0.0, "json": None}


class DataError(ValueError):
  """A data file that does not match its schema."""


def _check_value(
    kind: str, field: str, ftype: str, value: Any, where: str
) -> Any:
  ok = {
      "str": isinstance(value, str),
      "int": isinstance(value, int) and not isinstance(value, bool),
      "float": isinstance(value, (int, float)) and not isinstance(value, bool),
      "json": True,
  }[ftype]
  if not ok:
    raise DataError(
        f"{where}: field {field!r} of a {kind!r} record must be "
        f"{ftype}, got {type(value).__name__}"
    )
  if kind == "pairs" and field == "label" and value not in (1, 2):
    raise DataError(f"{where}: field 'label' must be 1 or 2, got {value!r}")
  if (
      kind == "ifeval"
      and field == "instruction_id_list"
      and not (
          isinstance(value, list) and all(isinstance(v, str) for v in value)
      )
  ):
    raise DataError(
        f"{where}: 'instruction_id_list' must be a list of " "strings"
    )
  if (
      kind == "ifeval"
      and field == "kwargs"
      and not (
          isinstance(value, list) and all(isinstance(v, dict) for v in value)
      )
  ):
    raise DataError(f"{where}: 'kwargs' must be a list of objects")
  return float(value) if ftype == "float" else value


def validate_record(kind: str, record: Any, where: str) -> dict[str, Any]:
  """Checks one decoded record against its schema; fills optional fields."""
  if kind not in SCHEMAS:
    raise ValueError(
        f"unknown data kind {kind!r}; expected one of " f"{sorted(SCHEMAS)}"
    )
  if not isinstance(record, dict):
    raise DataError(
        f"{where}: expected a JSON object, got " f"{type(record).__name__}"
    )
  out = {}
  for field, (ftype, required) in SCHEMAS[kind].items():
    if field not in record or record[field] is None:
      if required:
        raise DataError(
            f"{where}: missing required field {field!r} for a "
            f"{kind!r} record (required: "
            f"{[f for f, (_, r) in SCHEMAS[kind].items() if r]})"
        )
      out[field] = _DEFAULTS[ftype]
      continue
    out[field] = _check_value(kind, field, ftype, record[field], where)
  if kind == "ifeval" and len(out["kwargs"]) != len(out["instruction_id_list"]):
    raise DataError(
        f"{where}: 'kwargs' has {len(out['kwargs'])} entries but "
        f"'instruction_id_list' has "
        f"{len(out['instruction_id_list'])}"
    )
  return out


def iter_jsonl(path: str, kind: str) -> Iterator[dict[str, Any]]:
  """Yields validated records; raises `DataError` at the first bad line."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"data file not found: {path}")
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      where = f"{path}:{lineno}"
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise DataError(
            f"{where}: invalid JSON ({e.msg} at column {e.colno})"
            "; each line must be one JSON object"
        ) from None
      yield validate_record(kind, record, where)


def read_jsonl(path: str, kind: str) -> list[dict[str, Any]]:
  """Reads and validates a whole file; an empty file is an error."""
  records = list(iter_jsonl(path, kind))
  if not records:
    raise DataError(f"{path}: no records (empty split)")
  return records


def write_jsonl(path: str, records: Iterable[dict[str, Any]]) -> str:
  """Writes records atomically (temp file + rename): never half a file."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      for r in records:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path
