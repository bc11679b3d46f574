"""GGUF (llama.cpp) checkpoints: read, dequantize, map to our params.

Owns reading a Llama-architecture GGUF file with `gguf.GGUFReader`:
metadata -> `ModelConfig`, tensors -> float arrays (F32, F16, BF16, Q8_0,
Q4_0, Q4_1 via `gguf.quants.dequantize`), undoing llama.cpp's q/k row
permutation, and the embedded byte-level BPE tokenizer. Tensors are
converted to the Hugging Face layout first and then go through the same
`weights.tensor_specs` contract as safetensors checkpoints.

Layout notes:
  * ggml lists dimensions fastest-first (`ne`); GGUFReader's numpy arrays
    are row-major with the dimensions reversed, so a Linear weight comes out
    as [out, in], exactly the Hugging Face layout.
  * llama.cpp's convert_hf_to_gguf.py permutes the rows of q and k so that
    RoPE pairs are adjacent (interleaved, GPT-J style): per head, rows
    reshape (2, H/2) -> transpose -> (H/2, 2). `unpermute_qk` undoes this so
    that our Hugging Face-layout RoPE (pairs i, i + H/2) is correct.

Shape legend: D model, N heads, K kv heads, H head dim, V vocab.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import gguf
import numpy as np

from rlcs_jax import bpe_tokenizer
from rlcs_jax.model import weights
from rlcs_jax.model.config import ModelConfig

Q = gguf.GGMLQuantizationType
# Tensor types we read; anything else fails with a clear error.
SUPPORTED_TYPES = (Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1)
SUPPORTED_ARCHITECTURES = ("llama",)

# GGUF tensor name templates -> Hugging Face names.
_LAYER_NAMES = {
    "attn_norm": "input_layernorm.weight",
    "attn_q": "self_attn.q_proj.weight",
    "attn_k": "self_attn.k_proj.weight",
    "attn_v": "self_attn.v_proj.weight",
    "attn_output": "self_attn.o_proj.weight",
    "ffn_norm": "post_attention_layernorm.weight",
    "ffn_gate": "mlp.gate_proj.weight",
    "ffn_up": "mlp.up_proj.weight",
    "ffn_down": "mlp.down_proj.weight",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def hf_name(gguf_name: str) -> str | None:
  """Hugging Face name of a GGUF tensor name (None if not a known name)."""
  if gguf_name in _GLOBAL_NAMES:
    return _GLOBAL_NAMES[gguf_name]
  parts = gguf_name.split(".")
  if (
      len(parts) == 4
      and parts[0] == "blk"
      and parts[1].isdigit()
      and parts[3] == "weight"
      and parts[2] in _LAYER_NAMES
  ):
    return f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}"
  return None


def dequantize(
    data: np.ndarray, qtype: gguf.GGMLQuantizationType
) -> np.ndarray:
  """Raw GGUF tensor data (as GGUFReader returns it) -> float32 array.

  Quantised data is uint8 [..., bytes per row]; the result is [..., row].
  """
  qtype = Q(qtype)
  if qtype not in SUPPORTED_TYPES:
    raise ValueError(
        f"GGUF tensor type {qtype.name} is not supported; "
        f"supported: {[t.name for t in SUPPORTED_TYPES]}"
    )
  return np.asarray(gguf.quants.dequantize(data, qtype), dtype=np.float32)


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
  """llama.cpp's q/k row permutation (HF [n_head*H, in] -> interleaved)."""
  return (
      w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
      .swapaxes(1, 2)
      .reshape(w.shape)
  )


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
  """Inverse of `permute_qk`: back to the Hugging Face row order."""
  return (
      w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
      .swapaxes(1, 2)
      .reshape(w.shape)
  )


def read_metadata(reader: gguf.GGUFReader) -> dict[str, Any]:
  """All key/value fields of a GGUF file as Python values."""
  return {
      name: field.contents()
      for name, field in reader.fields.items()
      if not name.startswith("GGUF.")
  }


def gguf_to_model_config(
    meta: Mapping[str, Any], *, vocab_size: int, tied: bool, **overrides: Any
) -> ModelConfig:
  """Maps GGUF metadata of a Llama-architecture model to a `ModelConfig`.

  Args:
    meta: `read_metadata` output.
    vocab_size: rows of token_embd (the token list may be absent).
    tied: True when the file has no output.weight.
    **overrides: other `ModelConfig` fields (param_dtype, dtype, ...).
  """
  arch = meta.get("general.architecture")
  if arch not in SUPPORTED_ARCHITECTURES:
    raise ValueError(
        f"GGUF architecture {arch!r} is not supported; expected "
        f"one of {SUPPORTED_ARCHITECTURES}"
    )

  def get(key, default=None):
    value = meta.get(f"{arch}.{key}", default)
    if value is None:
      raise ValueError(f"GGUF metadata {arch}.{key} is missing")
    return value

  scaling = meta.get(f"{arch}.rope.scaling.type", "none")
  if scaling not in ("none", None):
    raise ValueError(f"GGUF rope scaling {scaling!r} is not supported")
  d, n = int(get("embedding_length")), int(get("attention.head_count"))
  head_dim = int(get("attention.key_length", d // n))
  rope_dim = int(get("rope.dimension_count", head_dim))
  if rope_dim != head_dim:
    raise ValueError(
        f"partial RoPE (rope.dimension_count={rope_dim}, "
        f"head_dim={head_dim}) is not supported"
    )
  fields = dict(
      vocab_size=vocab_size,
      d_model=d,
      num_layers=int(get("block_count")),
      num_heads=n,
      num_kv_heads=int(get("attention.head_count_kv", n)),
      head_dim=head_dim,
      mlp_dim=int(get("feed_forward_length")),
      max_seq_len=int(get("context_length")),
      rope_theta=float(get("rope.freq_base", 10_000.0)),
      rms_eps=float(get("attention.layer_norm_rms_epsilon")),
      tie_embeddings=tied,
  )
  fields.update(overrides)
  return ModelConfig(**fields)


def load_gguf(
    path: str,
    *,
    param_dtype: str = "float32",
    shardings: weights.ShardingsArg = None,
    mesh: Any = None,
    rules: weights.LogicalRules | None = None,
    **overrides: Any,
) -> tuple[ModelConfig, weights.Params, bpe_tokenizer.BPETokenizer | None]:
  """Loads a Llama-architecture GGUF file.

  Args:
    path: the .gguf file.
    param_dtype: dtype of the returned (dequantised) parameters.
    shardings, mesh, rules: where to place parameters, as in
      `hf_checkpoint.load_hf_checkpoint`.
    **overrides: other `ModelConfig` fields (dtype, cache_dtype, remat, ...).

  Returns:
    (config, params, tokenizer); tokenizer is None if the file has none.

  Raises:
    ValueError: unsupported architecture/tensor type, missing or unexpected
      tensors, or shapes that do not match the metadata.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"GGUF file not found: {path}")
  reader = gguf.GGUFReader(path)
  meta = read_metadata(reader)
  tensors = {t.name: t for t in reader.tensors}
  if "token_embd.weight" not in tensors:
    raise ValueError(f"{path}: missing tensor token_embd.weight")
  # ggml ne is [D, V]: the vocabulary is the slowest dimension.
  vocab_size = int(tensors["token_embd.weight"].shape[-1])
  tokenizer = None
  if "tokenizer.ggml.tokens" in meta:
    tokenizer = bpe_tokenizer.BPETokenizer.from_gguf_metadata(meta)
    if tokenizer.vocab_size != vocab_size:
      raise ValueError(
          f"{path}: {tokenizer.vocab_size} tokens but "
          f"token_embd has {vocab_size} rows"
      )
  cfg = gguf_to_model_config(
      meta,
      vocab_size=vocab_size,
      tied="output.weight" not in tensors,
      param_dtype=param_dtype,
      **overrides,
  )
  specs = weights.tensor_specs(cfg)
  by_hf_name = {}
  for name in tensors:
    by_hf_name[hf_name(name) or name] = name
  weights.check_tensor_names(list(by_hf_name), specs, path)
  target = weights.resolve_shardings(cfg, shardings, mesh, rules)

  def read(spec: weights.TensorSpec) -> np.ndarray:
    tensor = tensors[by_hf_name[spec.hf_name]]
    shape = tuple(int(x) for x in reversed(tensor.shape))
    if shape != spec.hf_shape:
      raise ValueError(
          f"{path}: tensor {tensor.name} has shape {shape}, "
          f"expected {spec.hf_shape}"
      )
    w = dequantize(tensor.data, tensor.tensor_type).reshape(shape)
    if tensor.name.endswith("attn_q.weight"):
      w = unpermute_qk(w, cfg.num_heads)
    elif tensor.name.endswith("attn_k.weight"):
      w = unpermute_qk(w, cfg.num_kv_heads)
    return w

  params = weights.params_from_host_tensors(cfg, specs, read, target, path)
  return cfg, params, tokenizer
