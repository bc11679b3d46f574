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

Cache: {"layers": ({"k": [B,S,K,H], "v": [B,S,K,H]}, ...),
        "valid": [B,S] bool, "end": int32 scalar (next slot to write)}.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rlcs_jax.model.config import ModelConfig, dtype_of

Array = jax.Array
Cache = dict[str, Any]

_NEG_INF = -1e30  # Finite, so rows with no visible key give no NaN.


def _param(module, name, init, names, shape, dtype):
  return module.param(
      name, nn.with_logical_partitioning(init, names), shape, dtype
  )


def _dot(eq: str, x: Array, w: Array, dtype: Any) -> Array:
  """Matmul with inputs in the compute dtype and float32 accumulation."""
  return jnp.einsum(
      eq, x.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32
  )


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


def apply_rope(x_BLNH: Array, positions_BL: Array, theta: float) -> Array:
  """Rotary embedding in the Hugging Face layout (pairs i and i + H/2)."""
  h = x_BLNH.shape[-1]
  half = h // 2
  inv_freq = 1.0 / (theta ** (jnp.arange(0, h, 2, dtype=jnp.float32) / h))
  angles = positions_BL[..., None].astype(jnp.float32) * inv_freq
  sin = jnp.sin(angles)[:, :, None, :]
  cos = jnp.cos(angles)[:, :, None, :]
  x = x_BLNH.astype(jnp.float32)
  x1, x2 = x[..., :half], x[..., half:]
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x_BLNH.dtype)


class Attention(nn.Module):
  """Grouped-query attention reading and writing an explicit KV cache."""

  cfg: ModelConfig

  @nn.compact
  def __call__(
      self, x_BLD, positions_BL, valid_BL, layer_cache, cache_valid, cache_end
  ):
    cfg = self.cfg
    pd, cd = dtype_of(cfg.param_dtype), dtype_of(cfg.dtype)
    d, n, k, h = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    init = nn.initializers.normal(stddev=d**-0.5)
    wq = _param(self, "q", init, ("embed", "heads", "head_dim"), (d, n, h), pd)
    wk = _param(
        self, "k", init, ("embed", "kv_heads", "head_dim"), (d, k, h), pd
    )
    wv = _param(
        self, "v", init, ("embed", "kv_heads", "head_dim"), (d, k, h), pd
    )
    wo = _param(
        self,
        "o",
        nn.initializers.normal(stddev=(n * h) ** -0.5),
        ("heads", "head_dim", "embed"),
        (n, h, d),
        pd,
    )
    q = _dot("bld,dnh->blnh", x_BLD, wq, cd)
    kk = _dot("bld,dkh->blkh", x_BLD, wk, cd)
    v = _dot("bld,dkh->blkh", x_BLD, wv, cd)
    if cfg.qkv_bias:
      zeros = nn.initializers.zeros
      q += _param(self, "q_bias", zeros, ("heads", "head_dim"), (n, h), pd)
      kk += _param(self, "k_bias", zeros, ("kv_heads", "head_dim"), (k, h), pd)
      v += _param(self, "v_bias", zeros, ("kv_heads", "head_dim"), (k, h), pd)
    if cfg.qk_norm:
      q = RMSNorm(cfg.rms_eps, pd, name="q_norm")(q)
      kk = RMSNorm(cfg.rms_eps, pd, name="k_norm")(kk)
    q = apply_rope(q, positions_BL, cfg.rope_theta)
    kk = apply_rope(kk, positions_BL, cfg.rope_theta)

    b, l = x_BLD.shape[:2]
    if layer_cache is None:
      keys, values, key_valid = kk, v, valid_BL
      q_slot = jnp.arange(l)
      k_slot = jnp.arange(l)
      new_cache = None
    else:
      cdt = layer_cache["k"].dtype
      keys = jax.lax.dynamic_update_slice(
          layer_cache["k"], kk.astype(cdt), (0, cache_end, 0, 0)
      )
      values = jax.lax.dynamic_update_slice(
          layer_cache["v"], v.astype(cdt), (0, cache_end, 0, 0)
      )
      new_cache = {"k": keys, "v": values}
      key_valid = cache_valid
      q_slot = cache_end + jnp.arange(l)
      k_slot = jnp.arange(keys.shape[1])
    mask_BLS = (k_slot[None, None, :] <= q_slot[None, :, None]) & (
        key_valid[:, None, :]
    )

    g = n // k
    q = q.reshape(b, l, k, g, h)
    logits = _dot("blkgh,bskh->bkgls", q, keys, cd) * (h**-0.5)
    logits = jnp.where(mask_BLS[:, None, None], logits, _NEG_INF)
    probs = jax.nn.softmax(logits, axis=-1)
    out = _dot("bkgls,bskh->blkgh", probs, values, cd).reshape(b, l, n, h)
    out = _constrain(
        out,
        (
            "activation_batch",
            "activation_length",
            "activation_heads",
            "head_dim",
        ),
    )
    return _dot("blnh,nhd->bld", out, wo, cd), new_cache


class MLP(nn.Module):
  """SwiGLU feed-forward."""

  cfg: ModelConfig

  @nn.compact
  def __call__(self, x_BLD):
    cfg = self.cfg
    pd, cd = dtype_of(cfg.param_dtype), dtype_of(cfg.dtype)
    d, f = cfg.d_model, cfg.mlp_dim
    gate = _param(
        self,
        "gate",
        nn.initializers.normal(d**-0.5),
        ("embed", "mlp"),
        (d, f),
        pd,
    )
    up = _param(
        self,
        "up",
        nn.initializers.normal(d**-0.5),
        ("embed", "mlp"),
        (d, f),
        pd,
    )
    down = _param(
        self,
        "down",
        nn.initializers.normal(f**-0.5),
        ("mlp", "embed"),
        (f, d),
        pd,
    )
    hidden = jax.nn.silu(_dot("bld,df->blf", x_BLD, gate, cd)) * _dot(
        "bld,df->blf", x_BLD, up, cd
    )
    hidden = _constrain(
        hidden, ("activation_batch", "activation_length", "activation_mlp")
    )
    return _dot("blf,fd->bld", hidden, down, cd)


class Block(nn.Module):
  """Pre-norm transformer block."""

  cfg: ModelConfig

  @nn.compact
  def __call__(
      self, x_BLD, positions_BL, valid_BL, layer_cache, cache_valid, cache_end
  ):
    cfg = self.cfg
    pd = dtype_of(cfg.param_dtype)
    attn_out, new_cache = Attention(cfg, name="attn")(
        RMSNorm(cfg.rms_eps, pd, name="attn_norm")(x_BLD),
        positions_BL,
        valid_BL,
        layer_cache,
        cache_valid,
        cache_end,
    )
    x_BLD = x_BLD + attn_out
    x_BLD = x_BLD + MLP(cfg, name="mlp")(
        RMSNorm(cfg.rms_eps, pd, name="mlp_norm")(x_BLD)
    )
    x_BLD = _constrain(
        x_BLD, ("activation_batch", "activation_length", "activation_embed")
    )
    return x_BLD, new_cache


class Transformer(nn.Module):
  """Token ids in, float32 logits (or final hidden states) out."""

  cfg: ModelConfig

  @nn.compact
  def __call__(
      self,
      tokens_BL: Array,
      positions_BL: Array | None = None,
      valid_BL: Array | None = None,
      cache: Cache | None = None,
      return_hidden: bool = False,
  ):
    """Runs the model.

    Args:
      tokens_BL: int token ids.
      positions_BL: RoPE positions; default: the number of valid tokens
        before each token (cache included), so padding does not shift them.
      valid_BL: False for padding tokens (never attended to).
      cache: optional KV cache (see module docstring); the L new tokens are
        written at slots [end, end + L).
      return_hidden: return final normalised hidden states [B, L, D]
        (float32) instead of logits, for chunked losses.

    Returns:
      (logits_BLV float32 or hidden_BLD, new cache or None).
    """
    cfg = self.cfg
    pd, cd = dtype_of(cfg.param_dtype), dtype_of(cfg.dtype)
    if valid_BL is None:
      valid_BL = jnp.ones(tokens_BL.shape, bool)
    if positions_BL is None:
      # Position = number of valid tokens before this one (cache included).
      offset_B = 0 if cache is None else jnp.sum(cache["valid"], axis=-1)
      positions_BL = jnp.maximum(
          jnp.reshape(offset_B, (-1, 1)) + jnp.cumsum(valid_BL, axis=-1) - 1, 0
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

    block_cls = nn.remat(Block, static_argnums=()) if cfg.remat else Block
    new_layers = []
    cache_valid = cache_end = None
    if cache is not None:
      cache_end = cache["end"]
      cache_valid = jax.lax.dynamic_update_slice(
          cache["valid"], valid_BL, (0, cache_end)
      )
    for i in range(cfg.num_layers):
      layer_cache = None if cache is None else cache["layers"][i]
      x, new_layer = block_cls(cfg, name=f"layers_{i}")(
          x, positions_BL, valid_BL, layer_cache, cache_valid, cache_end
      )
      new_layers.append(new_layer)
    x = RMSNorm(cfg.rms_eps, pd, name="final_norm")(x)

    new_cache = None
    if cache is not None:
      new_cache = {
          "layers": tuple(new_layers),
          "valid": cache_valid,
          "end": cache_end + tokens_BL.shape[1],
      }
    if return_hidden:
      return x, new_cache
    if cfg.tie_embeddings:
      return _dot("bld,vd->blv", x, embed.embedding, cd), new_cache
    return LMHead(cfg, name="lm_head")(x), new_cache


class LMHead(nn.Module):
  """Untied output projection."""

  cfg: ModelConfig

  @nn.compact
  def __call__(self, hidden_BLD):
    cfg = self.cfg
    pd, cd = dtype_of(cfg.param_dtype), dtype_of(cfg.dtype)
    kernel = _param(
        self,
        "kernel",
        nn.initializers.normal(stddev=cfg.d_model**-0.5),
        ("embed", "vocab"),
        (cfg.d_model, cfg.vocab_size),
        pd,
    )
    return _dot("bld,dv->blv", hidden_BLD, kernel, cd)


def init_cache(cfg: ModelConfig, batch: int, length: int) -> Cache:
  """Returns an empty cache with room for `length` tokens per row."""
  cdt = dtype_of(cfg.cache_dtype)
  shape = (batch, length, cfg.num_kv_heads, cfg.head_dim)
  return {
      "layers": tuple(
          {"k": jnp.zeros(shape, cdt), "v": jnp.zeros(shape, cdt)}
          for _ in range(cfg.num_layers)
      ),
      "valid": jnp.zeros((batch, length), bool),
      "end": jnp.zeros((), jnp.int32),
  }


def output_logits(params: Any, cfg: ModelConfig, hidden_BLD: Array) -> Array:
  """Applies the output head to hidden states from `return_hidden=True`."""
  cd = dtype_of(cfg.dtype)
  if cfg.tie_embeddings:
    return _dot("bld,vd->blv", hidden_BLD, params["embed"]["embedding"], cd)
  return _dot("bld,dv->blv", hidden_BLD, params["lm_head"]["kernel"], cd)
