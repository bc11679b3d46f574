"""Decoder-only transformer (Llama / Qwen2 / Qwen3) with an explicit KV cache.

Pure Flax linen: parameters are an explicit pytree, the cache is an explicit
pytree argument and return value, and nothing here jits itself or names a mesh
axis. Every parameter carries logical axis names (`vocab`, `embed`, `heads`,
`kv_heads`, `head_dim`, `mlp`, `norm`); activations get logical constraints
at block boundaries, which are no-ops unless the caller has set
`nn.logical_axis_rules` and a mesh.

Shape legend:
  B batch, L query length, S cache (key) length, D model width,
  N query heads, K kv heads, G = N // K, H head dim, F mlp width, V vocab.

Parameter tree (names are the contract with `model/weights.py`):
  embed/embedding [V, D]
  layers_{i}/attn_norm/scale [D]
  layers_{i}/attn/{q [D,N,H], k [D,K,H], v [D,K,H], o [N,H,D]}
  layers_{i}/attn/{q_bias [N,H], k_bias [K,H], v_bias [K,H]}  (qkv_bias)
  layers_{i}/attn/{q_norm [H], k_norm [H]}                     (qk_norm)
  layers_{i}/mlp_norm/scale [D]
  layers_{i}/mlp/{gate [D,F], up [D,F], down [F,D]}
  final_norm/scale [D]
  lm_head/kernel [D, V]                                        (untied only)

Sampling layout (`transposed_weights=True`, see `to_sampling_layout`): the
same tree with every matrix but the embedding stored output axes first
(q [N,H,D], o [D,N,H], gate [F,D], down [D,F], lm_head/kernel [V,D], ...),
the PyTorch `Linear` layout; the sampler decodes with it on CPU.

The KV cache's layout, allocation (`init_cache`) and writes are in
`model/kv_cache.py`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rlcs_jax.model import attention
from rlcs_jax.model import kv_cache
from rlcs_jax.model.config import ModelConfig, dtype_of
from rlcs_jax.model.matmul import dense, matmul

Array = jax.Array


def _param(module, name, init, names, shape, dtype):
  return module.param(
      name, nn.with_logical_partitioning(init, names), shape, dtype
  )


# (module, matrix) -> how many leading axes of the matrix are its inputs (the
# axes a matmul contracts), in the canonical layout.
_MATRIX_IN_AXES = {
    ("attn", "q"): 1,
    ("attn", "k"): 1,
    ("attn", "v"): 1,
    ("attn", "o"): 2,
    ("mlp", "gate"): 1,
    ("mlp", "up"): 1,
    ("mlp", "down"): 1,
    ("lm_head", "kernel"): 1,
}


def _to_output_major(x, n_in: int):
  """A canonical [in..., out...] matrix (or its axis names) as [out..., in...]."""
  if isinstance(x, tuple):
    return x[n_in:] + x[:n_in]
  return jnp.moveaxis(
      x, tuple(range(n_in)), tuple(range(x.ndim - n_in, x.ndim))
  )


def _matrix(module, name, init, names, shape, dtype):
  """Declares a matrix given in the canonical [in..., out...] layout.

  Stored (and returned) output axes first when the module has
  `transposed_weights` set.
  """
  if module.transposed_weights:
    n_in = _MATRIX_IN_AXES[(module.name, name)]
    names, shape = _to_output_major(names, n_in), _to_output_major(shape, n_in)
  return _param(module, name, init, names, shape, dtype)


def to_sampling_layout(params):
  """Canonical params -> the layout of `Transformer(transposed_weights=True)`.

  Every matrix but the embedding is copied output axes first. XLA:CPU runs
  a matmul of few rows (a decode step's B) faster when the weights are the
  dot's left operand, which needs them [out, in]: 1.2-2x in float32 at
  B = 8 and 1.8-2.5x in bf16 at B = 16 on SmolLM2's MLP shapes
  (`experiments/cpu_profile.py --sections matmul`). A transpose written
  next to the dot is folded back into it, so the copy is made once,
  outside the decode loop.
  """

  def convert(path, x):
    keys = tuple(getattr(k, "key", None) for k in path[-2:])
    if keys in _MATRIX_IN_AXES:
      return _to_output_major(x, _MATRIX_IN_AXES[keys])
    return x

  return jax.tree_util.tree_map_with_path(convert, params)


def _constrain(x: Array, names: tuple[str, ...]) -> Array:
  return nn.with_logical_constraint(x, names)


class RMSNorm(nn.Module):
  """RMS normalisation in float32 (Llama convention: scale after normalise)."""

  eps: float
  param_dtype: Any

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = _param(
        self,
        "scale",
        nn.initializers.ones,
        ("norm",),
        (x.shape[-1],),
        self.param_dtype,
    )
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, -1, keepdims=True) + self.eps)
    return x32 * scale.astype(jnp.float32)


def rope_angles(
    positions_BL: Array, head_dim: int, theta: float, table_size=None
):
  """(cos, sin) [B, L, 1, H/2] of the rotary angles at these positions.

  Computed once per forward pass and shared by every layer. With
  `table_size` (a static bound: every position is below it), they are
  looked up in a table of all positions below it (it depends on nothing
  traced), and the compiled program computes one sine and one cosine per
  table entry. Computed from the positions, XLA:CPU fused the sine and
  cosine into each consumer and computed them per element of the rotated
  q and k, which took longer than the rest of a decode step's rotary
  embedding.
  """
  inv_freq = 1.0 / (
      theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
  )
  if table_size is None:
    angles = positions_BL[..., None].astype(jnp.float32) * inv_freq
    return jnp.cos(angles)[:, :, None, :], jnp.sin(angles)[:, :, None, :]
  angles = jnp.arange(table_size, dtype=jnp.float32)[:, None] * inv_freq
  return tuple(
      f(angles).at[positions_BL].get(mode="promise_in_bounds")[:, :, None, :]
      for f in (jnp.cos, jnp.sin)
  )


def apply_rope(x_BLNH: Array, rope) -> Array:
  """Rotary embedding in the Hugging Face layout (pairs i and i + H/2);
  `rope` is `rope_angles`' (cos, sin)."""
  cos, sin = rope
  half = x_BLNH.shape[-1] // 2
  x = x_BLNH.astype(jnp.float32)
  x1, x2 = x[..., :half], x[..., half:]
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x_BLNH.dtype)


class Attention(nn.Module):
  """Grouped-query attention reading and writing an explicit KV cache.

  Returns (output, new layer cache or None, the new tokens' (keys, values)
  [B, L, K, H] as attention uses them, for a prefix).
  """

  cfg: ModelConfig
  transposed_weights: bool = False  # See `to_sampling_layout`.

  @nn.compact
  def __call__(
      self,
      x_BLD,
      rope,
      valid_BL,
      layer_cache,
      cache_valid,
      cache_end,
      prefix_layer=None,
      prefix_valid=None,
  ):
    cfg = self.cfg
    pd, cd = dtype_of(cfg.param_dtype), dtype_of(cfg.dtype)
    d, n, k, h = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    om = self.transposed_weights
    init = nn.initializers.normal(stddev=d**-0.5)
    wq = _matrix(self, "q", init, ("embed", "heads", "head_dim"), (d, n, h), pd)
    wk = _matrix(
        self, "k", init, ("embed", "kv_heads", "head_dim"), (d, k, h), pd
    )
    wv = _matrix(
        self, "v", init, ("embed", "kv_heads", "head_dim"), (d, k, h), pd
    )
    wo = _matrix(
        self,
        "o",
        nn.initializers.normal(stddev=(n * h) ** -0.5),
        ("heads", "head_dim", "embed"),
        (n, h, d),
        pd,
    )
    q = dense(x_BLD, wq, 1, cd, om)
    # k and v share their sharding, so they go through one matmul (stacked
    # on a new axis, which keeps that sharding; the stack of loop-invariant
    # weights is hoisted out of the decode loop): fewer, larger matmuls.
    kv = dense(x_BLD, jnp.stack([wk, wv], axis=0 if om else 1), 1, cd, om)
    kk, v = kv[:, :, 0], kv[:, :, 1]
    if cfg.qkv_bias:
      zeros = nn.initializers.zeros
      q += _param(self, "q_bias", zeros, ("heads", "head_dim"), (n, h), pd)
      kk += _param(self, "k_bias", zeros, ("kv_heads", "head_dim"), (k, h), pd)
      v += _param(self, "v_bias", zeros, ("kv_heads", "head_dim"), (k, h), pd)
    if cfg.qk_norm:
      q = RMSNorm(cfg.rms_eps, pd, name="q_norm")(q)
      kk = RMSNorm(cfg.rms_eps, pd, name="k_norm")(kk)
    q = apply_rope(q, rope)
    kk = apply_rope(kk, rope)

    b, l = x_BLD.shape[:2]
    causal_LL = jnp.arange(l)[None, :] <= jnp.arange(l)[:, None]
    new_mask_BLL = causal_LL[None] & valid_BL[:, None, :]

    def in_cache_layout(name, x_BLKH):
      return jnp.einsum(
          f"blkh->{kv_cache.CACHE_LAYOUT[name].replace('s', 'l')}", x_BLKH
      ).astype(layer_cache[name].dtype)

    if prefix_layer is not None:
      # The new tokens attend to every valid prefix token and causally to
      # themselves, in one softmax; the prefix's keys and values carry
      # gradients back to the pass that computed them.
      lp = prefix_valid.shape[1]
      mask_BLS = jnp.concatenate(
          [jnp.broadcast_to(prefix_valid[:, None], (b, l, lp)), new_mask_BLL],
          axis=-1,
      )
      out = attention.self_attention(
          q,
          jnp.concatenate([prefix_layer["k"].astype(kk.dtype), kk], axis=1),
          jnp.concatenate([prefix_layer["v"].astype(v.dtype), v], axis=1),
          mask_BLS,
          cd,
      )
      new_cache = None
    elif (
        layer_cache is None
        or layer_cache["v"].shape[kv_cache.CACHE_SLOT_AXIS["v"]] == 0
    ):
      out = attention.self_attention(q, kk, v, new_mask_BLL, cd)
      new_cache = None
      if layer_cache is not None:  # An empty cache becomes the new tokens'.
        new_cache = {n: in_cache_layout(n, x) for n, x in (("k", kk), ("v", v))}
    else:
      # The new tokens attend to the cache as it was and to themselves;
      # then they are written into it in place. The cache is read whole: a
      # slice of it (a window of the filled slots) was copied before every
      # read, which cost more than reading all of it (the sampler grows the
      # cache instead).
      slots = layer_cache["v"].shape[kv_cache.CACHE_SLOT_AXIS["v"]]
      old_mask_BLS = jnp.broadcast_to(
          ((jnp.arange(slots) < cache_end)[None, :] & cache_valid)[:, None],
          (b, l, slots),
      )
      # The products take their inputs in the cache's dtype, whatever the
      # compute dtype: any other would convert the whole cache for every
      # decoded token. With a bf16 cache they are bf16 x bf16 -> f32 dots,
      # which XLA:CPU runs faster than the f32 ones over an f32 cache (half
      # the bytes); the new tokens' keys and values enter rounded as they
      # are stored.
      out, read_BKMH = attention.segment_attention(
          q,
          [
              (layer_cache["k"], layer_cache["v"], old_mask_BLS, True),
              (kk, v, new_mask_BLL, False),
          ],
          layer_cache["k"].dtype,
      )
      # The write must wait for that read. XLA:CPU's copy insertion cannot
      # order an in-place update after an independent read of the same
      # buffer, so it copied both caches twice per layer for every decoded
      # token. Here the written values depend on the product of the
      # probabilities with the cached values (of the same row and kv head,
      # so no data crosses shards), which comes after both reads: `x > inf`
      # never holds, NaN included, but the compiler cannot fold it. That
      # product is a matmul's output, so the write's fusion reads one
      # element of it; made to depend on the summed attention output, the
      # write recomputed the new tokens' attention for every element it
      # wrote.
      never_B1K1 = (read_BKMH[:, :, :1, :1] > jnp.inf).reshape(b, 1, k, 1)
      new_cache = {}
      for name, new_BLKH in (("k", kk), ("v", v)):
        new = in_cache_layout(name, jnp.where(never_B1K1, 0.0, new_BLKH))
        start = [0, 0, 0, 0]
        start[kv_cache.CACHE_SLOT_AXIS[name]] = cache_end
        new_cache[name] = kv_cache.write_slots(layer_cache[name], new, start)
    out = _constrain(
        out,
        (
            "activation_batch",
            "activation_length",
            "activation_heads",
            "head_dim",
        ),
    )
    # [B, L, N, H] @ [N, H, D] as one 2-D matmul (an einsum contracted
    # (h, n) in that order and XLA:CPU then transposed the weight on every
    # call, i.e. once per layer per decoded token).
    out = dense(out, wo, 2, cd, om)
    return out, new_cache, {"k": kk, "v": v}


class MLP(nn.Module):
  """SwiGLU feed-forward."""

  cfg: ModelConfig
  transposed_weights: bool = False  # See `to_sampling_layout`.

  @nn.compact
  def __call__(self, x_BLD):
    cfg = self.cfg
    pd, cd = dtype_of(cfg.param_dtype), dtype_of(cfg.dtype)
    d, f = cfg.d_model, cfg.mlp_dim
    om = self.transposed_weights
    gate = _matrix(
        self,
        "gate",
        nn.initializers.normal(d**-0.5),
        ("embed", "mlp"),
        (d, f),
        pd,
    )
    up = _matrix(
        self,
        "up",
        nn.initializers.normal(d**-0.5),
        ("embed", "mlp"),
        (d, f),
        pd,
    )
    down = _matrix(
        self,
        "down",
        nn.initializers.normal(f**-0.5),
        ("mlp", "embed"),
        (f, d),
        pd,
    )
    # One matmul for gate and up (stacked as k/v in `Attention`).
    gate_up = dense(
        x_BLD, jnp.stack([gate, up], axis=0 if om else 1), 1, cd, om
    )
    hidden = jax.nn.silu(gate_up[:, :, 0]) * gate_up[:, :, 1]
    hidden = _constrain(
        hidden, ("activation_batch", "activation_length", "activation_mlp")
    )
    return dense(hidden, down, 1, cd, om)


class Block(nn.Module):
  """Pre-norm transformer block."""

  cfg: ModelConfig
  transposed_weights: bool = False  # See `to_sampling_layout`.

  @nn.compact
  def __call__(self, x_BLD, *attention_args):
    """`attention_args`: `Attention`'s arguments after its input."""
    cfg = self.cfg
    pd = dtype_of(cfg.param_dtype)
    tw = self.transposed_weights
    attn_out, new_cache, kv = Attention(cfg, tw, name="attn")(
        RMSNorm(cfg.rms_eps, pd, name="attn_norm")(x_BLD), *attention_args
    )
    x_BLD = x_BLD + attn_out
    x_BLD = x_BLD + MLP(cfg, tw, name="mlp")(
        RMSNorm(cfg.rms_eps, pd, name="mlp_norm")(x_BLD)
    )
    x_BLD = _constrain(
        x_BLD, ("activation_batch", "activation_length", "activation_embed")
    )
    return x_BLD, new_cache, kv


class Transformer(nn.Module):
  """Token ids in, float32 logits (or final hidden states) out.

  `transposed_weights=True` takes params in the sampling layout
  (`to_sampling_layout`), which the sampler's decode loop uses on CPU.
  """

  cfg: ModelConfig
  transposed_weights: bool = False

  @nn.compact
  def __call__(
      self,
      tokens_BL: Array,
      positions_BL: Array | None = None,
      valid_BL: Array | None = None,
      cache: kv_cache.Cache | None = None,
      return_hidden: bool = False,
      prefix: dict[str, Any] | None = None,
      return_prefix: bool = False,
  ):
    """Runs the model.

    Args:
      tokens_BL: int token ids.
      positions_BL: RoPE positions; default: the number of valid tokens
        before each token (cache included), so padding does not shift them.
      valid_BL: False for padding tokens (never attended to).
      cache: optional KV cache (see module docstring); the L new tokens are
        written at slots [end, end + L). An empty cache (0 slots, from
        `init_cache(cfg, batch, 0)`) comes back holding just the L tokens.
      return_hidden: return final normalised hidden states [B, L, D]
        (float32) instead of logits, for chunked losses.
      prefix: tokens before these ones, as `return_prefix` gave them (with
        its rows repeated, e.g. one prompt's for each of its completions):
        the L tokens attend to its valid tokens and causally to themselves.
        Unlike a cache, nothing is written and gradients flow into the pass
        that computed it. Not combined with `cache`.
      return_prefix: return these tokens' keys and values per layer, for a
        later call's `prefix`: {"layers": ({"k", "v": [B, L, K, H]}, ...),
        "valid": [B, L]}, in place of the cache.

    Returns:
      (logits_BLV float32 or hidden_BLD, the new cache, or the prefix with
      `return_prefix`, or None).
    """
    cfg = self.cfg
    pd, cd = dtype_of(cfg.param_dtype), dtype_of(cfg.dtype)
    if prefix is not None and cache is not None:
      raise ValueError("a prefix and a KV cache cannot be combined")
    if return_prefix and cache is not None:
      raise ValueError("return_prefix is for cache-free calls")
    if valid_BL is None:
      valid_BL = jnp.ones(tokens_BL.shape, bool)
    earlier = cache if prefix is None else prefix  # Tokens before these.
    rope_table = None
    if positions_BL is None:
      # Position = number of valid tokens before this one (cache or prefix
      # included), so below the number of earlier slots plus L.
      offset_B = 0 if earlier is None else jnp.sum(earlier["valid"], axis=-1)
      positions_BL = jnp.maximum(
          jnp.reshape(offset_B, (-1, 1)) + jnp.cumsum(valid_BL, axis=-1) - 1, 0
      )
      rope_table = tokens_BL.shape[1] + (
          0 if earlier is None else earlier["valid"].shape[1]
      )
    embed = nn.Embed(
        cfg.vocab_size,
        cfg.d_model,
        param_dtype=pd,
        embedding_init=nn.with_logical_partitioning(
            nn.initializers.normal(stddev=0.02), ("vocab", "embed")
        ),
        name="embed",
    )
    x = embed(tokens_BL).astype(jnp.float32)
    x = _constrain(
        x, ("activation_batch", "activation_length", "activation_embed")
    )

    tw = self.transposed_weights
    block_cls = nn.remat(Block, static_argnums=()) if cfg.remat else Block
    new_layers = []
    cache_valid = cache_end = None
    if cache is not None and cache["valid"].shape[1] == 0:
      cache_end, cache_valid = cache["end"], valid_BL
    elif cache is not None:
      kv_cache.check_room(cache, tokens_BL.shape[1])
      cache_end = cache["end"]
      cache_valid = jax.lax.dynamic_update_slice(
          cache["valid"], valid_BL, (0, cache_end)
      )
    rope = rope_angles(positions_BL, cfg.head_dim, cfg.rope_theta, rope_table)
    kvs = []
    for i in range(cfg.num_layers):
      layer_cache = None if cache is None else cache["layers"][i]
      x, new_layer, kv = block_cls(cfg, tw, name=f"layers_{i}")(
          x,
          rope,
          valid_BL,
          layer_cache,
          cache_valid,
          cache_end,
          None if prefix is None else prefix["layers"][i],
          None if prefix is None else prefix["valid"],
      )
      new_layers.append(new_layer)
      kvs.append(kv)
    x = RMSNorm(cfg.rms_eps, pd, name="final_norm")(x)

    new_cache = None
    if return_prefix:
      new_cache = {"layers": tuple(kvs), "valid": valid_BL}
    elif cache is not None:
      new_cache = {
          "layers": tuple(new_layers),
          "valid": cache_valid,
          "end": cache_end + tokens_BL.shape[1],
      }
    if return_hidden:
      return x, new_cache
    if cfg.tie_embeddings:
      return _head(x, embed.embedding, cd, output_major=True, sampling=tw), (
          new_cache
      )
    return LMHead(cfg, tw, name="lm_head")(x), new_cache


class LMHead(nn.Module):
  """Untied output projection."""

  cfg: ModelConfig
  transposed_weights: bool = False  # See `to_sampling_layout`.

  @nn.compact
  def __call__(self, hidden_BLD):
    cfg = self.cfg
    pd, cd = dtype_of(cfg.param_dtype), dtype_of(cfg.dtype)
    kernel = _matrix(
        self,
        "kernel",
        nn.initializers.normal(stddev=cfg.d_model**-0.5),
        ("embed", "vocab"),
        (cfg.d_model, cfg.vocab_size),
        pd,
    )
    tw = self.transposed_weights
    return _head(hidden_BLD, kernel, cd, output_major=tw, sampling=tw)


def output_logits(params: Any, cfg: ModelConfig, hidden_BLD: Array) -> Array:
  """Applies the output head to hidden states from `return_hidden=True`."""
  cd = dtype_of(cfg.dtype)
  if cfg.tie_embeddings:
    return _head(
        hidden_BLD, params["embed"]["embedding"], cd, output_major=True
    )
  return _head(hidden_BLD, params["lm_head"]["kernel"], cd, output_major=False)


def _head(
    hidden_BLD: Array,
    w: Array,
    dtype: Any,
    output_major: bool,
    sampling: bool = False,
) -> Array:
  """Logits [B, L, V] from a [V, D] (output-major: the tied embedding, or
  the sampling layout's kernel) or a [D, V] matrix.

  When sampling, few rows put the weights on the left (`matmul.dense`).
  """
  if sampling:
    return dense(hidden_BLD, w, 1, dtype, output_major=True)
  b, l, d = hidden_BLD.shape
  logits = matmul(
      hidden_BLD.reshape(b * l, d), w, dtype, transpose_w=output_major
  )
  return logits.reshape(b, l, -1)
