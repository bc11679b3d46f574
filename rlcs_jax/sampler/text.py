"""Text-level generation: prompts in, decoded completions out.

Wraps the jitted sampler with a tokenizer: formats and encodes prompts,
generates in fixed-size chunks (so the compiled batch shape is reused),
and decodes each completion up to (not including) its stop token.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import numpy as np

from rlcs_jax.model.config import ModelConfig
from rlcs_jax.sampler import sampling
from rlcs_jax.tokenizer import Tokenizer


@dataclasses.dataclass
class Completions:
  """Decoded completions plus the raw arrays GRPO needs."""

  texts: list[str]
  tokens: np.ndarray  # [B, T]
  logprobs: np.ndarray  # [B, T]
  lengths: np.ndarray  # [B]
  truncated: np.ndarray  # [B]
  prompt_tokens: list[list[int]]


def sampling_config(
    section,
    tokenizer: Tokenizer,
    *,
    greedy: bool = False,
    max_new_tokens: int | None = None,
    temperature: float | None = None,
) -> sampling.SamplingConfig:
  """SamplingConfig from a `config.sampler` section and a tokenizer."""
  return sampling.SamplingConfig(
      max_new_tokens=max_new_tokens or section.max_new_tokens,
      temperature=section.temperature if temperature is None else temperature,
      top_k=section.top_k,
      top_p=section.top_p,
      greedy=greedy,
      stop_ids=tuple(tokenizer.stop_ids),
      pad_id=tokenizer.pad_id,
      prompt_buckets=tuple(section.prompt_buckets),
  )


def decode_completion(
    tokenizer: Tokenizer, tokens: np.ndarray, length: int, truncated: bool
) -> str:
  ids = tokens[: length if truncated else max(length - 1, 0)]
  return tokenizer.decode(ids.tolist())


def generate_text(
    params,
    model_cfg: ModelConfig,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    cfg: sampling.SamplingConfig,
    rng: jax.Array,
    *,
    chunk_size: int | None = None,
    batch_sharding=None,
    raw_prompts: bool = False,
) -> Completions:
  """Generates one completion per prompt.

  Prompts are wrapped with `tokenizer.format_prompt` unless `raw_prompts`.
  Generation runs in chunks of `chunk_size` rows (the last chunk is padded
  with a copy of the first prompt so the shape stays the same).
  """
  encoded = [
      tokenizer.encode(p) if raw_prompts else tokenizer.encode_prompt(p)
      for p in prompts
  ]
  if raw_prompts and tokenizer.bos_id is not None:
    encoded = [[tokenizer.bos_id] + e for e in encoded]
  n = len(encoded)
  chunk = chunk_size or n
  outs = []
  for start in range(0, n, chunk):
    part = encoded[start : start + chunk]
    real = len(part)
    part = part + [encoded[0]] * (chunk - real)
    out = sampling.generate(
        params,
        model_cfg,
        part,
        cfg,
        jax.random.fold_in(rng, start),
        batch_sharding=batch_sharding,
    )
    outs.append(jax.tree.map(lambda x: x[:real], out))
  tokens = np.concatenate([o.tokens for o in outs])
  logprobs = np.concatenate([o.logprobs for o in outs])
  lengths = np.concatenate([o.lengths for o in outs])
  truncated = np.concatenate([o.truncated for o in outs])
  texts = [
      decode_completion(tokenizer, tokens[i], lengths[i], truncated[i])
      for i in range(n)
  ]
  return Completions(
      texts=texts,
      tokens=tokens,
      logprobs=logprobs,
      lengths=lengths,
      truncated=truncated,
      prompt_tokens=encoded,
  )
