"""Run setup shared by the trainers: mesh, data files, tokenizer, model config.

Everything here is idempotent on a workdir: rerunning reuses the StoryWorld
files, the trained tokenizer and the prepared TFDS datasets.
"""

from __future__ import annotations

import json
import math
import os
import random
from typing import Any

from absl import logging
import jax
import ml_collections

from rlcs_jax import sharding as shd
from rlcs_jax import tokenizer as tokenizer_lib
from rlcs_jax.data import builders
from rlcs_jax.data import jsonl
from rlcs_jax.model.config import ModelConfig

# Data kind of each split name.
SPLIT_KINDS = {
    "sft_train": "sft",
    "sft_eval": "sft",
    "sft_constraints": "sft",
    "pairs_train": "pairs",
    "pairs_eval": "pairs",
    "contexts_train": "contexts",
    "contexts_eval": "contexts",
    "constraints_train": "ifeval",
    "constraints_eval": "ifeval",
}


def make_mesh(config: ml_collections.ConfigDict):
  mesh = shd.make_mesh(dict(config.mesh))
  logging.info("mesh %s over %d devices", dict(mesh.shape), mesh.size)
  return mesh


def rules(config: ml_collections.ConfigDict):
  return tuple(tuple(r) for r in config.sharding_rules)


class MissingSplitError(KeyError):
  """A data split the job needs is not configured (message printed as is)."""

  def __str__(self) -> str:
    return str(self.args[0])


class DataFiles(dict):
  """Split name -> JSONL path; a split the run needs but lacks names the key.

  With user JSONL only the splits set in `data.files` exist, and a job that
  needs another one (e.g. `rlcs` without preference pairs) stops with the
  config key to set instead of a bare KeyError.
  """

  def __missing__(self, split: str):
    kind = SPLIT_KINDS.get(split, "?")
    raise MissingSplitError(
        f"this job needs data.files.{split} (a {kind!r} JSONL file, schema in "
        f"the README), which is not set; the set splits are "
        f"{sorted(self) or 'none'}"
    )


def data_files(config: ml_collections.ConfigDict, workdir: str) -> DataFiles:
  """Split name -> JSONL path (StoryWorld written once, or the user's)."""
  if config.data.source == "jsonl":
    files = {k: v for k, v in config.data.files.items() if v}
    if not files:
      raise ValueError("data.source=jsonl but no data.files.* path is set")
    for split, path in files.items():
      if not os.path.exists(path):
        raise FileNotFoundError(f"data.files.{split}: {path} does not exist")
    return DataFiles(files)
  if config.data.source != "storyworld":
    raise ValueError(
        f"data.source must be storyworld or jsonl, got "
        f"{config.data.source!r}"
    )
  from rlcs_jax.data import storyworld_splits  # Generator: only when used.

  out_dir = os.path.join(workdir, "data", "storyworld")
  sw = dict(config.data.storyworld)
  seed = sw.pop("seed")
  sizes = {k: v for k, v in sw.items() if v}
  manifest = os.path.join(out_dir, "manifest.json")
  want = {"seed": seed, "sizes": sizes}
  if os.path.exists(manifest):
    with open(manifest) as f:
      have = json.load(f)
    if have.get("spec") == want and all(
        os.path.exists(p) for p in have["files"].values()
    ):
      return DataFiles(have["files"])
  if jax.process_index() == 0:
    files = storyworld_splits.write_storyworld(out_dir, seed=seed, sizes=sizes)
    tmp = manifest + ".tmp"
    with open(tmp, "w") as f:
      json.dump({"spec": want, "files": files}, f)
    os.replace(tmp, manifest)
  sync("storyworld")
  with open(manifest) as f:
    return DataFiles(json.load(f)["files"])


def sync(name: str):
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def load_tokenizer(
    config: ml_collections.ConfigDict, workdir: str, files: dict[str, str]
) -> tokenizer_lib.Tokenizer:
  """Loads `tokenizer.path`, or trains a SentencePiece model on the data."""
  tc = config.tokenizer
  if tc.kind == "gguf":
    from rlcs_jax import bpe_tokenizer  # Only for pretrained GGUF models.

    path = tc.path or (init_path(config) if config.init.kind == "gguf" else "")
    if not path:
      raise ValueError(
          "tokenizer.kind=gguf needs tokenizer.path (or init.kind=gguf)"
      )
    return bpe_tokenizer.BPETokenizer.from_gguf(path)
  if tc.kind == "hf":
    from rlcs_jax import bpe_tokenizer  # HF tokenizer.json (Qwen2 family).

    path = tc.path or (config.init.path if config.init.kind == "hf" else "")
    if not path:
      raise ValueError(
          "tokenizer.kind=hf needs tokenizer.path (or init.kind=hf)"
      )
    return bpe_tokenizer.BPETokenizer.from_hf_dir(path)
  if tc.kind != "sentencepiece":
    raise ValueError(
        "tokenizer.kind must be sentencepiece, gguf or hf, got " f"{tc.kind!r}"
    )
  if tc.path:
    return tokenizer_lib.SentencePieceTokenizer(tc.path)
  prefix = os.path.join(workdir, "tokenizer", "sp")
  if not os.path.exists(prefix + ".model") and jax.process_index() == 0:
    texts = list(_tokenizer_texts(files, tc.max_train_texts, config.seed))
    logging.info(
        "training a %d-piece SentencePiece model on %d texts",
        tc.vocab_size,
        len(texts),
    )
    tokenizer_lib.train_sentencepiece(
        texts, prefix + ".tmp", vocab_size=tc.vocab_size
    )
    for ext in (".model", ".vocab"):
      os.replace(prefix + ".tmp" + ext, prefix + ext)
  sync("tokenizer")
  return tokenizer_lib.SentencePieceTokenizer(prefix + ".model")


_TEXT_FIELDS = (
    "prompt",
    "response",
    "response_1",
    "response_2",
    "teacher_12",
    "teacher_21",
    "reference",
)


def _tokenizer_texts(files: dict[str, str], limit: int, seed: int):
  texts = []
  for split, path in sorted(files.items()):
    for record in jsonl.iter_jsonl(path, SPLIT_KINDS[split]):
      texts.extend(record[f] for f in _TEXT_FIELDS if record.get(f))
  random.Random(seed).shuffle(texts)
  from rlcs_jax.genrm import prompts as genrm_prompts
  # The judge template's fixed text must tokenize well too.
  texts.append(genrm_prompts.build_judge_prompt("context", "one", "two"))
  return texts[:limit] + [tokenizer_lib.PLAIN_RESPONSE_MARKER]


def model_config(
    config: ml_collections.ConfigDict, tokenizer: tokenizer_lib.Tokenizer | None
) -> ModelConfig:
  """Model config from the preset, overrides and the tokenizer's vocab."""
  overrides = {}
  if tokenizer is not None and config.model.vocab_size is None:
    overrides["vocab_size"] = tokenizer.vocab_size
  cfg = ModelConfig.from_config(config.model, **overrides)
  if tokenizer is not None and tokenizer.vocab_size > cfg.vocab_size:
    raise ValueError(
        f"tokenizer has {tokenizer.vocab_size} pieces but "
        f"model.vocab_size={cfg.vocab_size}"
    )
  return cfg


def datasets(kind: str, files: dict[str, str], workdir: str) -> dict[str, Any]:
  """TFDS data sources for the given splits (all of one kind).

  Process 0 prepares the dataset; the others wait, then open it (TFDS's
  finalizing rename fails when two processes prepare the same directory).
  """
  data_dir = os.path.join(workdir, "data", "tfds")
  if jax.process_index() == 0:
    sources = builders.build(kind, files, data_dir)
  sync(f"datasets:{kind}")
  if jax.process_index() != 0:
    sources = builders.build(kind, files, data_dir)
  return sources


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "config.json")
  with open(path + ".tmp", "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  os.replace(path + ".tmp", path)


def pretrained_params(
    config: ml_collections.ConfigDict, model_cfg: ModelConfig, mesh
) -> Any:
  """Initial weights from `config.init`, placed on their shardings; or None."""
  if not config.init.kind:
    return None
  from rlcs_jax.model import pretrained  # Only when a checkpoint is used.
  from rlcs_jax.trainers import state as state_lib

  shardings = state_lib.param_shardings(model_cfg, mesh, rules(config))
  path = init_path(config)
  loaded = pretrained.load_pretrained(
      config.init.kind,
      path,
      param_dtype=model_cfg.param_dtype,
      shardings=shardings,
  )
  for field in (
      "vocab_size",
      "d_model",
      "num_layers",
      "num_heads",
      "num_kv_heads",
      "head_dim",
      "mlp_dim",
      "tie_embeddings",
      "qkv_bias",
      "qk_norm",
      "rope_theta",
      "rms_eps",
  ):
    have, want = getattr(loaded.config, field), getattr(model_cfg, field)
    # GGUF stores floats as float32: compare rope_theta / rms_eps loosely.
    if not math.isclose(have, want, rel_tol=1e-5):
      raise ValueError(
          f"init.path={path}: checkpoint has {field}={have} but the config "
          f"has {want}; set model.preset to match"
      )
  return loaded.params


def init_path(config: ml_collections.ConfigDict) -> str:
  """`init.path`; for kind=gguf with no path, SmolLM2 from the local cache."""
  if config.init.path or config.init.kind != "gguf":
    return config.init.path
  from rlcs_jax.model import smollm2  # Only for the default GGUF model.

  return smollm2.find_gguf(smollm2.default_cache_dir())
