"""Scalar Bradley–Terry reward model: transformer backbone + linear head.

The RLCS baseline against the GenRM (SPEC §3) and RLMR's writing-quality
scorer (SPEC §4). The score of a (prompt, response) sequence is a linear
head applied to the final normalised hidden state at the sequence's last
valid token (the `eos` that ends the response, unless the response was cut
to fit). Training minimises the Bradley–Terry loss −log σ(r_chosen −
r_rejected) on labelled pairs.

Everything here is a pure function of arrays and a `ModelConfig`; the
trainer (`trainers/reward_model.py`) jits, shards and checkpoints.

Parameter tree:
  backbone/...      a `Transformer` parameter tree (its `embed`, layers, ...)
  head/kernel [D]   float32
  head/bias   []    float32

Shape legend: B batch, L length, D model width.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from rlcs_jax.data.pipeline import PromptTooLongError
from rlcs_jax.model.config import ModelConfig
from rlcs_jax.model.transformer import Transformer
from rlcs_jax.tokenizer import Tokenizer

Array = jax.Array


def init_head(model_cfg: ModelConfig) -> dict[str, Array]:
  """A zero head: every sequence scores 0 until training moves it."""
  return {
      "kernel": jnp.zeros((model_cfg.d_model,), jnp.float32),
      "bias": jnp.zeros((), jnp.float32),
  }


def init_params(backbone: Any, model_cfg: ModelConfig) -> dict[str, Any]:
  """Reward-model parameters from a (e.g. SFT policy) backbone."""
  return {"backbone": backbone, "head": init_head(model_cfg)}


def last_valid_index(valid_BL: Array) -> Array:
  """Index of each row's last True (0 for an all-padding row)."""
  length = valid_BL.shape[-1]
  idx_BL = jnp.where(valid_BL, jnp.arange(length), -1)
  return jnp.maximum(jnp.max(idx_BL, axis=-1), 0)


def score(
    params: Mapping[str, Any],
    model_cfg: ModelConfig,
    tokens_BL: Array,
    valid_BL: Array,
) -> Array:
  """Reward r_B (float32) read at each row's last valid token."""
  hidden_BLD, _ = Transformer(model_cfg).apply(
      {"params": params["backbone"]},
      tokens_BL,
      valid_BL=valid_BL,
      return_hidden=True,
  )
  last_B = last_valid_index(valid_BL)
  h_BD = jnp.take_along_axis(hidden_BLD, last_B[:, None, None], axis=1)[:, 0]
  head = params["head"]
  return (
      jnp.einsum(
          "bd,d->b",
          h_BD.astype(jnp.float32),
          head["kernel"].astype(jnp.float32),
          preferred_element_type=jnp.float32,
      )
      + head["bias"]
  )


def bt_loss(
    r_chosen_B: Array, r_rejected_B: Array, weight_B: Array | None = None
) -> tuple[tuple[Array, Array], dict[str, tuple[Array, Array]]]:
  """Bradley–Terry loss −log σ(r_c − r_r) as (sum, count), plus metrics.

  Metrics are (sum, count) pairs too: `accuracy` (r_c > r_r; a tie counts
  0.5, so an untrained zero head scores 0.5) and `margin` (r_c − r_r).
  `weight_B` (0/1) drops padding rows; default: every row counts.
  """
  margin_B = (r_chosen_B - r_rejected_B).astype(jnp.float32)
  w_B = (
      jnp.ones_like(margin_B)
      if weight_B is None
      else weight_B.astype(jnp.float32)
  )
  count = jnp.sum(w_B)
  loss_sum = jnp.sum(w_B * jax.nn.softplus(-margin_B))
  correct_B = jnp.where(margin_B > 0, 1.0, jnp.where(margin_B == 0, 0.5, 0.0))
  metrics = {
      "accuracy": (jnp.sum(w_B * correct_B), count),
      "margin": (jnp.sum(w_B * margin_B), count),
  }
  return (loss_sum, count), metrics


def encode_scored(
    tokenizer: Tokenizer,
    prompt: str,
    response: str,
    seq_len: int,
    *,
    name: str = "",
) -> list[int]:
  """Token ids the RM scores: formatted prompt, response, eos; cut to fit.

  Only the response tail is cut. Raises `PromptTooLongError` (naming
  `name`) when the prompt leaves no room for a response token.
  """
  prompt_ids = tokenizer.encode_prompt(prompt)
  if len(prompt_ids) >= seq_len:
    raise PromptTooLongError(
        f"scalar RM: {name} has a {len(prompt_ids)}-token prompt; seq_len="
        f"{seq_len} leaves no room for the response (raise scalar_rm.seq_len "
        "or shorten the prompt)"
    )
  ids = prompt_ids + tokenizer.encode(response) + [tokenizer.eos_id]
  return ids[:seq_len]


def pad_right(
    ids: list[int], length: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
  """Right-pads one id list to `length`; returns (tokens, valid)."""
  tokens = np.full(length, pad_id, np.int32)
  valid = np.zeros(length, bool)
  tokens[: len(ids)] = ids
  valid[: len(ids)] = True
  return tokens, valid


def featurize_pair(
    tokenizer: Tokenizer, record: Mapping[str, Any], seq_len: int
) -> dict[str, np.ndarray]:
  """A decoded `pairs` record -> chosen/rejected [seq_len] arrays.

  The chosen response is `response_{label}`. Keys: `chosen_tokens`,
  `chosen_valid`, `rejected_tokens`, `rejected_valid` (right padded).
  """
  label = record["label"]
  if label not in (1, 2):
    raise ValueError(f"record {record['id']!r}: label must be 1 or 2")
  chosen = record[f"response_{label}"]
  rejected = record[f"response_{3 - label}"]
  out = {}
  for role, text in (("chosen", chosen), ("rejected", rejected)):
    ids = encode_scored(
        tokenizer,
        record["prompt"],
        text,
        seq_len,
        name=f"record {record['id']!r}",
    )
    out[f"{role}_tokens"], out[f"{role}_valid"] = pad_right(
        ids, seq_len, tokenizer.pad_id
    )
  return out
