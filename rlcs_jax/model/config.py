"""Model hyper-parameters: a frozen dataclass and named presets.

The model code only ever sees `ModelConfig`; `from_config` is the single place
where an ml_collections section becomes one (with validation).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

_DTYPES = {
    "float32": jnp.float32,
    "bfloat16": jnp.bfloat16,
    "float16": jnp.float16,
}


def dtype_of(name: str) -> Any:
  """Returns the jnp dtype for a config string, with a clear error."""
  try:
    return _DTYPES[name]
  except KeyError:
    raise ValueError(
        f"unknown dtype {name!r}; expected one of {sorted(_DTYPES)}"
    ) from None


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Decoder-only transformer of the Llama / Qwen2 / Qwen3 family."""

  vocab_size: int
  d_model: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  mlp_dim: int
  max_seq_len: int
  rope_theta: float = 10_000.0
  rms_eps: float = 1e-6
  tie_embeddings: bool = True
  qkv_bias: bool = False  # Qwen2 puts a bias on q, k and v.
  qk_norm: bool = False  # Qwen3 RMS-normalises q and k per head.
  param_dtype: str = "float32"
  dtype: str = "float32"  # Compute dtype of matmul inputs.
  # KV cache dtype; "" (the default) is the compute dtype, `dtype`: with
  # bf16 compute the cache then holds what the training forward's attention
  # consumes (keys and values rounded to bf16), see `kv_dtype`.
  cache_dtype: str = ""
  remat: bool = False  # Rematerialise each block in the backward pass.

  def __post_init__(self):
    for name in (
        "vocab_size",
        "d_model",
        "num_layers",
        "num_heads",
        "num_kv_heads",
        "head_dim",
        "mlp_dim",
        "max_seq_len",
    ):
      if getattr(self, name) <= 0:
        raise ValueError(
            f"model.{name} must be positive, got " f"{getattr(self, name)}"
        )
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
          f"model.num_heads={self.num_heads} must be a multiple of "
          f"model.num_kv_heads={self.num_kv_heads} (grouped-query attention)"
      )
    if self.head_dim % 2:
      raise ValueError(f"model.head_dim={self.head_dim} must be even (RoPE)")
    for name in ("param_dtype", "dtype"):
      dtype_of(getattr(self, name))
    _ = self.kv_dtype  # Validates cache_dtype ("" is `dtype`).

  @property
  def kv_dtype(self) -> Any:
    """The KV cache's jnp dtype: `cache_dtype`, by default the compute
    dtype. Decoding's attention products take their inputs in it, so with
    bf16 compute and this default they are the training forward's (bf16
    inputs, float32 accumulation), and the cache takes half the memory."""
    return dtype_of(self.cache_dtype or self.dtype)

  @classmethod
  def from_config(cls, section: Any, **overrides: Any) -> "ModelConfig":
    """Builds from a `config.model` section: a preset name plus overrides."""
    fields = dict(PRESETS[section.preset]) if section.preset else {}
    for field in dataclasses.fields(cls):
      if field.name in section and section[field.name] is not None:
        fields[field.name] = section[field.name]
    fields.update(overrides)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in fields and f.default is dataclasses.MISSING
    ]
    if missing:
      raise ValueError(
          f"model config is missing {missing}; set "
          f"model.preset or these keys"
      )
    return cls(**fields)

  def num_params(self) -> int:
    """Counts parameters analytically (used by memory planning and MFU)."""
    d, n, k, h, f = (
        self.d_model,
        self.num_heads,
        self.num_kv_heads,
        self.head_dim,
        self.mlp_dim,
    )
    attn = d * n * h * 2 + d * k * h * 2
    if self.qkv_bias:
      attn += n * h + 2 * k * h
    if self.qk_norm:
      attn += 2 * h
    per_layer = attn + 3 * d * f + 2 * d
    emb = self.vocab_size * d * (1 if self.tie_embeddings else 2)
    return self.num_layers * per_layer + emb + d

  def matmul_params(self) -> int:
    """Parameters one token's forward pass multiplies by.

    Every parameter is a matmul weight except the input embedding lookup
    (when tied, the same table is also the output head matmul).
    """
    return self.num_params() - (
        0 if self.tie_embeddings else self.vocab_size * self.d_model
    )

  def flops_per_token(self, seq_len: int) -> float:
    """Forward+backward model FLOPs per token (6N + attention), PaLM style."""
    n_matmul = self.matmul_params()
    attn = 12 * self.num_layers * self.num_heads * self.head_dim * seq_len / 2
    return 6.0 * n_matmul + attn


# Shapes only: weights come from training or `model/pretrained.py`.
PRESETS: dict[str, dict[str, Any]] = {
    # ~4.5M parameters; trains on StoryWorld in minutes on 2 CPU cores.
    "tiny": dict(
        vocab_size=4096,
        d_model=256,
        num_layers=4,
        num_heads=4,
        num_kv_heads=2,
        head_dim=64,
        mlp_dim=768,
        max_seq_len=640,
        rope_theta=10_000.0,
        rms_eps=1e-6,
        tie_embeddings=True,
    ),
    # Smallest shapes for unit tests.
    "test": dict(
        vocab_size=128,
        d_model=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=8,
        mlp_dim=64,
        max_seq_len=64,
    ),
    "smollm2_135m": dict(
        vocab_size=49152,
        d_model=576,
        num_layers=30,
        num_heads=9,
        num_kv_heads=3,
        head_dim=64,
        mlp_dim=1536,
        max_seq_len=2048,
        rope_theta=100_000.0,
        rms_eps=1e-5,
        tie_embeddings=True,
    ),
    "qwen2p5_7b": dict(
        vocab_size=152064,
        d_model=3584,
        num_layers=28,
        num_heads=28,
        num_kv_heads=4,
        head_dim=128,
        mlp_dim=18944,
        max_seq_len=32768,
        rope_theta=1_000_000.0,
        rms_eps=1e-6,
        tie_embeddings=False,
        qkv_bias=True,
    ),
    "qwen2p5_32b": dict(
        vocab_size=152064,
        d_model=5120,
        num_layers=64,
        num_heads=40,
        num_kv_heads=8,
        head_dim=128,
        mlp_dim=27648,
        max_seq_len=32768,
        rope_theta=1_000_000.0,
        rms_eps=1e-6,
        tie_embeddings=False,
        qkv_bias=True,
    ),
    "qwen3_8b": dict(
        vocab_size=151936,
        d_model=4096,
        num_layers=36,
        num_heads=32,
        num_kv_heads=8,
        head_dim=128,
        mlp_dim=12288,
        max_seq_len=32768,
        rope_theta=1_000_000.0,
        rms_eps=1e-6,
        tie_embeddings=False,
        qk_norm=True,
    ),
}
