"""GenRM judging through the jitted sampler, and verdict-position logits.

`Judge` turns (context, continuation 1, continuation 2) triples into judge
prompts, generates the analysis + verdict for all of them in fixed-size
batches, parses each final verdict strictly, and (on request) reads the
logits of the two verdict tokens by teacher-forcing the prompt plus the
response up to `Verdict: [[` — the quantity entropy shaping uses.

Shape legend: N judgements, L sequence length.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rlcs_jax import compiler
from rlcs_jax.genrm import prompts as genrm_prompts
from rlcs_jax.genrm import verdict as verdict_lib
from rlcs_jax.model.config import ModelConfig
from rlcs_jax.model.transformer import Transformer
from rlcs_jax.sampler import sampling
from rlcs_jax.sampler import text as text_sampler
from rlcs_jax.tokenizer import Tokenizer


@dataclasses.dataclass
class Judgements:
  """Parsed results for N judgements."""

  choices: np.ndarray  # [N] int: 1, 2, or 0 for a format failure.
  responses: list[str]
  completions: text_sampler.Completions
  prompts: list[str]

  @property
  def format_ok(self) -> np.ndarray:
    return self.choices > 0


def verdict_token_ids(tokenizer: Tokenizer) -> tuple[int, int]:
  """Ids of the tokens that follow `Verdict: [[` for verdicts 1 and 2."""
  one = tokenizer.encode(verdict_lib.VERDICT_OPEN + "1]]")
  two = tokenizer.encode(verdict_lib.VERDICT_OPEN + "2]]")
  for a, b in zip(one, two):
    if a != b:
      return a, b
  raise ValueError("tokenizer cannot distinguish verdicts 1 and 2")


@functools.partial(compiler.jit, static_argnames=("model_cfg",))
def _last_logits(params, tokens_BL, valid_BL, ids_2, *, model_cfg):
  logits, _ = Transformer(model_cfg).apply(
      {"params": params}, tokens_BL, valid_BL=valid_BL
  )
  return jnp.take(logits[:, -1], ids_2, axis=-1)  # Left padded: last = end.


class Judge:
  """A GenRM (params + tokenizer) usable as a batched pairwise judge."""

  def __init__(
      self,
      params,
      model_cfg: ModelConfig,
      tokenizer: Tokenizer,
      sampling_cfg: sampling.SamplingConfig,
      *,
      chunk_size: int = 32,
      batch_sharding=None,
  ):
    self.params = params
    self.model_cfg = model_cfg
    self.tokenizer = tokenizer
    self.sampling_cfg = sampling_cfg
    self.chunk_size = chunk_size
    self.batch_sharding = batch_sharding
    self.verdict_ids = np.asarray(verdict_token_ids(tokenizer), np.int32)

  def prompts(
      self, contexts: Sequence[str], first: Sequence[str], second: Sequence[str]
  ) -> list[str]:
    return [
        genrm_prompts.build_judge_prompt(c, a, b)
        for c, a, b in zip(contexts, first, second)
    ]

  def judge(
      self,
      contexts: Sequence[str],
      first: Sequence[str],
      second: Sequence[str],
      rng: jax.Array,
  ) -> Judgements:
    """Generates and parses one judgement per triple."""
    prompts = self.prompts(contexts, first, second)
    out = text_sampler.generate_text(
        self.params,
        self.model_cfg,
        self.tokenizer,
        prompts,
        self.sampling_cfg,
        rng,
        chunk_size=self.chunk_size,
        batch_sharding=self.batch_sharding,
    )
    choices = np.array(
        [
            v.choice if v.status == verdict_lib.OK else 0
            for v in map(verdict_lib.parse_verdict, out.texts)
        ],
        np.int32,
    )
    return Judgements(
        choices=choices, responses=out.texts, completions=out, prompts=prompts
    )

  def __call__(self, contexts, first, second, rng=None) -> np.ndarray:
    """The `judge_fn` interface of evaluation: choices in {1, 2, 0}."""
    rng = jax.random.key(0) if rng is None else rng
    return self.judge(contexts, first, second, rng).choices

  def verdict_logits(
      self, prompts: Sequence[str], responses: Sequence[str], params=None
  ) -> np.ndarray:
    """[N, 2] logits of verdict tokens 1 and 2 at the verdict position.

    Rows whose response has no final verdict line get NaN.
    """
    params = self.params if params is None else params
    seqs, rows = [], []
    for i, (p, r) in enumerate(zip(prompts, responses)):
      prefix = verdict_lib.verdict_prefix(r)
      if prefix is None:
        continue
      ids = self.tokenizer.encode_prompt(p) + self.tokenizer.encode(prefix)
      seqs.append(ids)
      rows.append(i)
    out = np.full((len(prompts), 2), np.nan, np.float32)
    if not seqs:
      return out
    length = sampling.bucket_length(
        max(map(len, seqs)), self.sampling_cfg.prompt_buckets
    )
    chunk = self.chunk_size
    for start in range(0, len(seqs), chunk):
      part = seqs[start : start + chunk]
      real = len(part)
      part = part + [part[0]] * (chunk - real)
      tokens, valid = sampling.pad_prompts(
          part, length, self.tokenizer.pad_id, "left"
      )
      logits = np.asarray(
          _last_logits(
              params, tokens, valid, self.verdict_ids, model_cfg=self.model_cfg
          )
      )
      out[rows[start : start + real]] = logits[:real]
    return out
