"""Jitted KV-cache sampler: a prefill jit and a decode jit (`lax.while_loop`s).

Prompts are padded (left by default, right also supported) to a bucket length
so new prompt lengths reuse compiled code; the decode loop runs entirely on
device, with per-row stop handling, and returns the sampled tokens with their
per-token log-probs.

Shape legend: B batch, P padded prompt length, T max new tokens,
S = P + T cache length, V vocab.

Log-prob convention: `logprobs_BT` are log-softmax of `logits / temperature`
(before top-k/top-p truncation), the quantity GRPO's ratio uses; with
`greedy=True` the temperature is 1.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rlcs_jax import compiler
from rlcs_jax.model import kv_cache
from rlcs_jax.model.config import ModelConfig, dtype_of
from rlcs_jax.model.matmul import WEIGHTS_LEFT_MAX_ROWS
from rlcs_jax.model.transformer import (
    Transformer,
    output_logits,
    to_sampling_layout,
)

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """How to sample; hashable, so it is a static argument of the jits."""

  max_new_tokens: int
  temperature: float = 1.0
  top_k: int = 0  # 0 disables.
  top_p: float = 1.0  # 1.0 disables.
  greedy: bool = False
  stop_ids: tuple[int, ...] = ()
  pad_id: int = 0
  prompt_buckets: tuple[int, ...] = (32, 64, 128, 256, 512)
  padding: str = "left"  # "left" | "right"

  def __post_init__(self):
    if self.max_new_tokens <= 0:
      raise ValueError(
          f"max_new_tokens must be positive, got " f"{self.max_new_tokens}"
      )
    if not self.greedy and self.temperature <= 0:
      raise ValueError("temperature must be > 0 unless greedy=True")
    if not 0.0 < self.top_p <= 1.0:
      raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
    if self.top_k < 0:
      raise ValueError(f"top_k must be >= 0, got {self.top_k}")
    if self.padding not in ("left", "right"):
      raise ValueError(
          f"padding must be 'left' or 'right', got " f"{self.padding!r}"
      )
    if not self.prompt_buckets or list(self.prompt_buckets) != sorted(
        self.prompt_buckets
    ):
      raise ValueError("prompt_buckets must be a non-empty increasing tuple")


class SampleOutput(NamedTuple):
  """Host-side result. `tokens` after a row's stop token are `pad_id`."""

  tokens: np.ndarray  # [B, T] int32
  logprobs: np.ndarray  # [B, T] float32, 0 after the end
  lengths: np.ndarray  # [B] tokens generated, stop token included
  truncated: np.ndarray  # [B] bool: hit max_new_tokens without a stop token
  prompt_lengths: np.ndarray  # [B]


@flax.struct.dataclass
class DecodeState:
  step: Array  # int32 scalar
  cache: Any
  # Next-token logits (float32), [B, V]; [V, B] while `decode`'s loop runs
  # vocabulary-major.
  logits: Array
  tokens_BT: Array
  logprobs_BT: Array
  done_B: Array
  rng: Array


def bucket_length(n: int, buckets: Sequence[int]) -> int:
  """Smallest bucket >= n; beyond the largest, the next multiple of it."""
  for b in buckets:
    if n <= b:
      return b
  top = buckets[-1]
  return -(-n // top) * top


def pad_prompts(
    prompts: Sequence[Sequence[int]], length: int, pad_id: int, side: str
) -> tuple[np.ndarray, np.ndarray]:
  """Pads token lists to [B, length]; returns (tokens, valid)."""
  tokens = np.full((len(prompts), length), pad_id, np.int32)
  valid = np.zeros((len(prompts), length), bool)
  for i, p in enumerate(prompts):
    if not p:
      raise ValueError(f"prompt {i} is empty")
    if len(p) > length:
      raise ValueError(f"prompt {i} has {len(p)} tokens > {length}")
    sl = slice(length - len(p), length) if side == "left" else slice(0, len(p))
    tokens[i, sl] = p
    valid[i, sl] = True
  return tokens, valid


def _filter_logits(logits_BV: Array, cfg: SamplingConfig) -> Array:
  """Applies temperature, top-k and top-p; returns float32 logits."""
  logits = logits_BV.astype(jnp.float32) / cfg.temperature
  neg = jnp.finfo(jnp.float32).min
  if cfg.top_k > 0 and cfg.top_k < logits.shape[-1]:
    kth = jax.lax.top_k(logits, cfg.top_k)[0][:, -1:]
    logits = jnp.where(logits < kth, neg, logits)
  if cfg.top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    # Keep the smallest prefix whose mass reaches top_p (always >= 1 token).
    exclusive = jnp.cumsum(probs, axis=-1) - probs
    keep = exclusive < cfg.top_p
    cutoff = jnp.min(
        jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True
    )
    logits = jnp.where(logits < cutoff, neg, logits)
  return logits


def _first_argmax(x: Array, axis: int = -1) -> Array:
  """jnp.argmax over `axis` (first maximal index), as two plain reductions,
  max then min, which XLA:CPU vectorises; its variadic argmax reduction was
  several times slower, paid per token over the vocabulary."""
  top = jnp.max(x, axis=axis, keepdims=True)
  ids = jax.lax.broadcasted_iota(jnp.int32, x.shape, axis % x.ndim)
  first = jnp.min(jnp.where(x == top, ids, x.shape[axis]), axis=axis)
  return jnp.minimum(first, x.shape[axis] - 1)  # All-NaN rows: last id.


def _choose(
    logits: Array, rng: Array, cfg: SamplingConfig, vocab_axis: int = 1
) -> tuple[Array, Array]:
  """Picks the next token; returns (token_B, logprob_B).

  `logits` are [B, V], or [V, B] with `vocab_axis=0` (see `decode`).
  Reductions over V only, no log-softmax array: every decoded token pays
  this over the whole vocabulary (49k for SmolLM2). Sampling draws one
  uniform number per row (`_inverse_cdf_draw`), not one per vocabulary
  entry as `jax.random.categorical`'s Gumbel-max does: on CPU those 49k
  random numbers per row cost more than the rest of the choice.
  """
  filtered = not cfg.greedy and (cfg.top_k > 0 or cfg.top_p < 1.0)
  if filtered and vocab_axis == 0:
    # The filters sort and select along the rows' last axis.
    logits, vocab_axis = logits.T, 1
  ax = vocab_axis
  z = logits.astype(jnp.float32)
  if not cfg.greedy:
    z = z / cfg.temperature
  top = jnp.max(z, axis=ax, keepdims=True)
  if cfg.greedy:
    token = _first_argmax(z, ax)
    total = jnp.sum(jnp.exp(z - top), axis=ax)
  elif filtered:
    # The filtered logits keep the top one, so `top` is their maximum too.
    weights = jnp.exp(_filter_logits(logits, cfg) - top)
    token, _ = _inverse_cdf_draw(weights, rng)
    total = jnp.sum(jnp.exp(z - top), axis=ax)
  else:
    token, total = _inverse_cdf_draw(jnp.exp(z - top), rng, ax)
  chosen = jnp.take_along_axis(z - top, jnp.expand_dims(token, ax), axis=ax)
  return token, chosen.squeeze(ax) - jnp.log(total)


_DRAW_BLOCK = 256


def _inverse_cdf_draw(
    weights: Array, rng: Array, vocab_axis: int = 1
) -> tuple[Array, Array]:
  """Index i drawn with probability weights[i] / sum(weights), per row.

  `weights` are [B, V], or [V, B] with `vocab_axis=0`; >= 0 with a
  positive sum per row. One uniform u per row, scaled by the row's total,
  is located in the cumulative sums in two steps: among blocks of
  `_DRAW_BLOCK` entries (cumulative block masses), then inside the chosen
  block. Returns (index_B, total_B). An index always has a positive
  weight, also when float rounding puts u at or past the end.
  """
  ax = vocab_axis
  v, b = weights.shape[ax], weights.shape[1 - ax]
  blk = min(_DRAW_BLOCK, v)
  nb = -(-v // blk)
  pad = [(0, 0), (0, 0)]
  pad[ax] = (0, nb * blk - v)
  # Blocks on axis `ax`, entries within a block on axis `ax + 1`: [B, N, K]
  # or [N, K, B].
  w3 = jnp.pad(weights, pad).reshape((b, nb, blk) if ax else (nb, blk, b))
  mass = jnp.sum(w3, axis=ax + 1)  # [B, N] or [N, B]
  cum = jnp.cumsum(mass, axis=ax)
  total_B = jax.lax.index_in_dim(cum, nb - 1, axis=ax, keepdims=False)
  u_B = jax.random.uniform(rng, (b,), jnp.float32) * total_B
  block_B = _first_above(cum, u_B, mass, ax)
  # The mass before the chosen block: the exclusive cumulative sum.
  pad[ax] = (1, 0)
  before = jnp.pad(jax.lax.slice_in_dim(cum, 0, nb - 1, axis=ax), pad)
  at = lambda x, i: jnp.take_along_axis(x, jnp.expand_dims(i, ax), axis=ax)
  before_B = at(before, block_B).squeeze(ax)
  w_blk = at(w3, jnp.expand_dims(block_B, ax)).squeeze(ax)  # [B,K] / [K,B]
  cum_blk = jnp.cumsum(w_blk, axis=ax)
  inner_B = _first_above(cum_blk, u_B - before_B, w_blk, ax)
  return block_B * blk + inner_B, total_B


def _first_above(cum: Array, u_B: Array, w: Array, axis: int = 1) -> Array:
  """First x along `axis` with cum[x] > u (so w[x] > 0); past the end, the
  last x with w[x] > 0."""
  count = jnp.sum(cum <= jnp.expand_dims(u_B, axis), axis=axis)
  ids = jax.lax.broadcasted_iota(jnp.int32, w.shape, axis)
  last = jnp.max(jnp.where(w > 0, ids, 0), axis=axis)
  return jnp.minimum(count, last).astype(jnp.int32)


@functools.partial(compiler.jit, static_argnames=("model_cfg", "group_size"))
def prefill(
    params,
    tokens_BP: Array,
    valid_BP: Array,
    *,
    model_cfg: ModelConfig,
    group_size: int = 1,
):
  """Runs the prompt through the model; returns (next-token logits, cache).

  The cache has the prompt's P slots; `decode` grows it. With `group_size`
  R > 1, rows i*R .. i*R+R-1 must be the same prompt (a GRPO group's): each
  group's first row is run and its logits and cache are repeated R times.
  """
  r = group_size
  if r > 1:
    tokens_BP, valid_BP = tokens_BP[::r], valid_BP[::r]
  b, p = tokens_BP.shape
  hidden_BPD, cache = Transformer(model_cfg).apply(
      {"params": params},
      tokens_BP,
      valid_BL=valid_BP,
      cache=kv_cache.init_cache(model_cfg, b, 0),
      return_hidden=True,
  )
  # The output head runs at each row's last valid prompt token only (left
  # or right padding): the other positions' logits are never used, and for
  # SmolLM2 at B = 32 x 64 they were 116 GFLOP and a 400 MB array.
  last = p - 1 - jnp.argmax(valid_BP[:, ::-1], axis=-1)
  hidden_B1D = jnp.take_along_axis(hidden_BPD, last[:, None, None], axis=1)
  logits_B1V = output_logits(params, model_cfg, hidden_B1D)
  if r > 1:
    # Split over the batch axes again, as the rows arrived (a no-op without
    # logical axis rules).
    rows = lambda x: nn.with_logical_constraint(
        jnp.repeat(x, r, axis=0), ("activation_batch",) + (None,) * (x.ndim - 1)
    )
    logits_B1V = rows(logits_B1V)
    cache = dict(
        cache,
        layers=jax.tree.map(rows, cache["layers"]),
        valid=rows(cache["valid"]),
    )
  return logits_B1V[:, 0], cache


# Not donated: the loop grows the cache, so no input buffer has an output's
# shape to be reused for.
@functools.partial(compiler.jit, static_argnames=("model_cfg", "cfg"))
def decode(
    params, state: DecodeState, *, model_cfg: ModelConfig, cfg: SamplingConfig
) -> DecodeState:
  """Samples until every row stopped or `max_new_tokens` were produced."""
  stop_ids = jnp.asarray(cfg.stop_ids or (-1,), jnp.int32)
  # On CPU the loop runs on a copy of the weights in the sampling layout
  # (made here, once per call, outside the loops): a decode step's few-row
  # matmuls run faster with the weights as the left operand.
  transposed = jax.default_backend() == "cpu"
  if transposed:
    params = to_sampling_layout(params)
  model = Transformer(model_cfg, transposed_weights=transposed)
  # The weights-left head computes a step's logits as [V, B]; the loop
  # keeps them so, and the token choice reduces over their leading axis.
  # Transposed to [B, V] first, the logits were copied for every token and
  # the choice ran slower (`cpu_profile --sections sampling` times both).
  # One row is the same either way.
  b = state.tokens_BT.shape[0]
  vocab_major = transposed and 1 < b <= WEIGHTS_LEFT_MAX_ROWS
  vocab_axis = 0 if vocab_major else 1
  to_loop = (lambda x: x.T) if vocab_major else (lambda x: x)
  state = state.replace(logits=to_loop(state.logits))

  def body(s: DecodeState):
    rng, key = jax.random.split(s.rng)
    token, logp = _choose(s.logits, key, cfg, vocab_axis)
    token = jnp.where(s.done_B, cfg.pad_id, token)
    logp = jnp.where(s.done_B, 0.0, logp)
    tokens = jax.lax.dynamic_update_slice(
        s.tokens_BT, token[:, None], (0, s.step)
    )
    logprobs = jax.lax.dynamic_update_slice(
        s.logprobs_BT, logp[:, None], (0, s.step)
    )
    valid = ~s.done_B
    done = s.done_B | jnp.any(token[:, None] == stop_ids[None, :], axis=-1)
    logits, cache = model.apply(
        {"params": params},
        token[:, None],
        valid_BL=valid[:, None],
        cache=s.cache,
    )
    return DecodeState(
        step=s.step + 1,
        cache=cache,
        logits=to_loop(logits[:, 0]),
        tokens_BT=tokens,
        logprobs_BT=logprobs,
        done_B=done,
        rng=rng,
    )

  # The cache grows between loops instead of being allocated whole: each
  # decoded token's attention reads all of the cache it is given, so a loop
  # runs while the next write slot is below its cache size, and the cache
  # is then padded to the next size (one copy per loop). A token's cost
  # then follows the filled part of the cache, not `max_new_tokens`.
  prompt = state.cache["valid"].shape[1]
  for size in cache_sizes(prompt, cfg.max_new_tokens):
    state = state.replace(cache=_grow_cache(state.cache, size))

    def cond(s: DecodeState, size=size):
      return (
          (s.step < cfg.max_new_tokens)
          & ~jnp.all(s.done_B)
          & (s.cache["end"] < size)
      )

    state = jax.lax.while_loop(cond, body, state)
  return state.replace(logits=to_loop(state.logits))


def initial_state(logits_BV, cache, rng, cfg: SamplingConfig) -> DecodeState:
  """The state `decode` starts from, after `prefill` gave logits and cache."""
  b, t = logits_BV.shape[0], cfg.max_new_tokens
  return DecodeState(
      step=jnp.zeros((), jnp.int32),
      cache=cache,
      logits=logits_BV,
      tokens_BT=jnp.full((b, t), cfg.pad_id, jnp.int32),
      logprobs_BT=jnp.zeros((b, t), jnp.float32),
      done_B=jnp.zeros((b,), bool),
      rng=rng,
  )


def cache_sizes(prompt: int, max_new_tokens: int) -> tuple[int, ...]:
  """The cache sizes `decode` grows through after a `prompt`-slot prefill.

  S/4 and S/2 of the final S = prompt + max_new_tokens (rounded up to
  multiples of 64) then S, keeping those above the prompt: at most three
  loop bodies to compile, and attention reads at most about twice the
  filled part of the cache.
  """
  slots = prompt + max_new_tokens
  sizes = {slots}
  for frac in (4, 2):
    sizes.add(-(-slots // frac // 64) * 64)
  return tuple(sorted(x for x in sizes if prompt < x <= slots))


def _grow_cache(cache, size: int):
  """Pads the cache's slot axis (of valid and of every k/v) to `size`."""

  def grow(x, axis):
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, size - x.shape[axis])
    return jnp.pad(x, pad)

  return {
      "layers": tuple(
          {n: grow(x, kv_cache.CACHE_SLOT_AXIS[n]) for n, x in layer.items()}
          for layer in cache["layers"]
      ),
      "valid": grow(cache["valid"], 1),
      "end": cache["end"],
  }


def generate_arrays(
    params,
    tokens_BP: Array,
    valid_BP: Array,
    rng: Array,
    *,
    model_cfg: ModelConfig,
    cfg: SamplingConfig,
    group_size: int = 1,
):
  """Device-side generation on padded arrays; returns device arrays.

  Returns (tokens_BT, logprobs_BT, lengths_B, truncated_B). Usable inside a
  larger jitted program or with sharded inputs (batch sharding propagates).
  `group_size` R > 1: rows i*R .. i*R+R-1 are one prompt, prefilled once
  (`prefill`).
  """
  p = tokens_BP.shape[1]
  cache_len = p + cfg.max_new_tokens
  if cache_len > model_cfg.max_seq_len:
    raise ValueError(
        f"prompt bucket {p} + max_new_tokens {cfg.max_new_tokens} = "
        f"{cache_len} exceeds model.max_seq_len={model_cfg.max_seq_len}; "
        "shorten the prompts or lower sampler.max_new_tokens"
    )
  params = compute_params(params, model_cfg)
  logits, cache = prefill(
      params, tokens_BP, valid_BP, model_cfg=model_cfg, group_size=group_size
  )
  state = decode(
      params,
      initial_state(logits, cache, rng, cfg),
      model_cfg=model_cfg,
      cfg=cfg,
  )
  return _summarise(state.tokens_BT, state.logprobs_BT, cfg)


def compute_params(params, model_cfg: ModelConfig):
  """Params with every matrix in the compute dtype, for sampling.

  With float32 params and a narrower compute dtype (`model.dtype=bfloat16`)
  the model casts each weight at every use: once per decoded token inside
  the decode loop. Casting once per `generate` call instead costs one
  compute-dtype copy of the weights. Vectors (norm scales, biases) keep
  their dtype; the embedding is cast too, so with bf16 compute the sampled
  tokens see bf16-rounded input embeddings. A no-op when the dtypes agree.
  """
  cd = dtype_of(model_cfg.dtype)
  if cd == dtype_of(model_cfg.param_dtype):
    return params
  return _cast_matrices(params, cd)


@functools.partial(compiler.jit, static_argnums=1)
def _cast_matrices(params, dtype):
  return jax.tree.map(
      lambda x: (
          x.astype(dtype)
          if x.ndim >= 2 and jnp.issubdtype(x.dtype, jnp.floating)
          else x
      ),
      params,
  )


def _summarise(tokens_BT: Array, logprobs_BT: Array, cfg: SamplingConfig):
  stop_ids = jnp.asarray(cfg.stop_ids or (-1,), jnp.int32)
  is_stop = jnp.any(tokens_BT[..., None] == stop_ids, axis=-1)
  stopped = jnp.any(is_stop, axis=1)
  lengths = jnp.where(
      stopped, jnp.argmax(is_stop, axis=1) + 1, cfg.max_new_tokens
  ).astype(jnp.int32)
  return tokens_BT, logprobs_BT, lengths, ~stopped


def generate(
    params,
    model_cfg: ModelConfig,
    prompts: Sequence[Sequence[int]],
    cfg: SamplingConfig,
    rng: Array,
    *,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> SampleOutput:
  """Samples continuations for token-id prompts (host lists in, numpy out)."""
  length = bucket_length(max(len(p) for p in prompts), cfg.prompt_buckets)
  tokens, valid = pad_prompts(prompts, length, cfg.pad_id, cfg.padding)
  if batch_sharding is not None:
    tokens = jax.device_put(tokens, batch_sharding)
    valid = jax.device_put(valid, batch_sharding)
  out_tokens, logprobs, lengths, truncated = generate_arrays(
      params, tokens, valid, rng, model_cfg=model_cfg, cfg=cfg
  )
  return SampleOutput(
      tokens=np.asarray(out_tokens),
      logprobs=np.asarray(logprobs),
      lengths=np.asarray(lengths),
      truncated=np.asarray(truncated),
      prompt_lengths=np.asarray([len(p) for p in prompts]),
  )
