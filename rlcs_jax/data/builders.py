"""TFDS builders over JSONL files, written as array_record, read without TF.

One `GeneratorBasedBuilder` per data kind (see `data/jsonl.py`). A builder is
constructed with the JSONL file of each split; the prepared dataset lives in
`<data_dir>/<name>/<fingerprint>/<version>`, where the fingerprint hashes the
input files' paths, sizes and modification times, so an edited file is
rebuilt and an unchanged one is reused. Reading goes through
`builder.as_data_source(split)` (random access, no TensorFlow).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from rlcs_jax.data import jsonl

_FEATURE_OF_TYPE = {
    "str": tfds.features.Text,
    "json": tfds.features.Text,  # Encoded as a JSON string.
    "int": lambda: tfds.features.Scalar(np.int64),
    "float": lambda: tfds.features.Scalar(np.float32),
}


def _fingerprint(files: dict[str, str]) -> str:
  h = hashlib.sha256()
  for split in sorted(files):
    path = os.path.abspath(files[split])
    st = os.stat(path)
    h.update(f"{split}|{path}|{st.st_size}|{st.st_mtime_ns}".encode())
  return "f" + h.hexdigest()[:16]


class _JsonlBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared logic; subclasses set KIND."""

  KIND = ""
  VERSION = tfds.core.Version("1.0.0")

  def __init__(self, *, files: dict[str, str], **kwargs: Any):
    for split, path in files.items():
      if not os.path.exists(path):
        raise FileNotFoundError(
            f"{self.KIND} split {split!r}: file not found:" f" {path}"
        )
    self._files = dict(files)
    config = tfds.core.BuilderConfig(
        name=_fingerprint(self._files), description=json.dumps(self._files)
    )
    super().__init__(config=config, file_format="array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    features = {
        field: _FEATURE_OF_TYPE[ftype]()
        for field, (ftype, _) in jsonl.SCHEMAS[self.KIND].items()
    }
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict(features),
        description=f"rlcs_jax {self.KIND} records from JSONL.",
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {
        split: self._generate_examples(path)
        for split, path in self._files.items()
    }

  def _generate_examples(self, path):
    schema = jsonl.SCHEMAS[self.KIND]
    n = 0
    for i, record in enumerate(jsonl.iter_jsonl(path, self.KIND)):
      n += 1
      yield i, {
          field: (
              json.dumps(record[field])
              if schema[field][0] == "json"
              else record[field]
          )
          for field in schema
      }
    if n == 0:
      raise jsonl.DataError(f"{path}: no records (empty split)")


class SftJsonl(_JsonlBuilder):
  KIND = "sft"


class PairsJsonl(_JsonlBuilder):
  KIND = "pairs"


class ContextsJsonl(_JsonlBuilder):
  KIND = "contexts"


class IfevalJsonl(_JsonlBuilder):
  KIND = "ifeval"


BUILDERS = {
    "sft": SftJsonl,
    "pairs": PairsJsonl,
    "contexts": ContextsJsonl,
    "ifeval": IfevalJsonl,
}


def decode_record(kind: str, raw: dict[str, Any]) -> dict[str, Any]:
  """Turns a data-source record (bytes, JSON strings) back into Python."""
  out = {}
  for field, (ftype, _) in jsonl.SCHEMAS[kind].items():
    value = raw[field]
    if isinstance(value, bytes):
      value = value.decode("utf-8")
    if ftype == "json":
      value = json.loads(value)
    elif ftype == "int":
      value = int(value)
    elif ftype == "float":
      value = float(value)
    out[field] = value
  return out


def build(kind: str, files: dict[str, str], data_dir: str):
  """Prepares (or reuses) the dataset; returns split -> random-access source."""
  if kind not in BUILDERS:
    raise ValueError(f"unknown data kind {kind!r}; expected {sorted(BUILDERS)}")
  builder = BUILDERS[kind](files=files, data_dir=data_dir)
  builder.download_and_prepare()
  return {split: builder.as_data_source(split=split) for split in files}


def describe_source(source: Any) -> str:
  """The JSONL file (and split) a data source from `build` was made from."""
  try:
    files = json.loads(source.dataset_info.config_description)
    return f"{files[source.split]} (split {source.split!r})"
  except (AttributeError, KeyError, TypeError, ValueError):
    return repr(source)  # Another kind of source (e.g. a list in tests).
