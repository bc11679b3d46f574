"""Pretrained weights of either checkpoint format behind one entry point.

Owns `load_pretrained(kind, path, ...)`, the one function trainers call to
load a Hugging Face safetensors directory (`hf_checkpoint.load_hf_checkpoint`)
or a GGUF file (`gguf_import.load_gguf`), and its result `Pretrained`
(config, params and the tokenizer when the format embeds one).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from rlcs_jax.model import gguf_import
from rlcs_jax.model import hf_checkpoint
from rlcs_jax.model import weights
from rlcs_jax.model.config import ModelConfig


class Pretrained(NamedTuple):
  """A loaded pretrained model; tokenizer is None when the format has none."""

  config: ModelConfig
  params: weights.Params
  tokenizer: Any


def _load_hf(path: str, **kwargs: Any) -> Pretrained:
  cfg, params = hf_checkpoint.load_hf_checkpoint(path, **kwargs)
  return Pretrained(cfg, params, None)


def _load_gguf(path: str, **kwargs: Any) -> Pretrained:
  return Pretrained(*gguf_import.load_gguf(path, **kwargs))


PRETRAINED_LOADERS: dict[str, Callable[..., Pretrained]] = {
    "hf": _load_hf,
    "gguf": _load_gguf,
}


def load_pretrained(kind: str, path: str, **kwargs: Any) -> Pretrained:
  """Loads pretrained weights of `kind` ("hf" or "gguf") from `path`.

  Keyword arguments are those of `hf_checkpoint.load_hf_checkpoint` /
  `gguf_import.load_gguf` (param_dtype, shardings or mesh + rules, ModelConfig overrides).
  """
  try:
    loader = PRETRAINED_LOADERS[kind]
  except KeyError:
    raise ValueError(
        f"unknown pretrained kind {kind!r}; expected one of "
        f"{sorted(PRETRAINED_LOADERS)}"
    ) from None
  return loader(path, **kwargs)
