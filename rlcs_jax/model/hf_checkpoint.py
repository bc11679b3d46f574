"""Hugging Face safetensors checkpoints <-> our parameter pytree.

Owns the config mapping both ways between a Hugging Face Llama / Qwen2 /
Qwen3 `config.json` and `ModelConfig`, import (`load_hf_checkpoint`, placing
each parameter directly on its target sharding) and export
(`save_hf_checkpoint`, sharded safetensors plus index). Tensor names and
layouts come from the contract in `model/weights.py` (`tensor_specs`).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
from typing import Any, Mapping

import flax.linen as nn
import jax
from jax.experimental import multihost_utils
import numpy as np
import safetensors
import safetensors.numpy

from rlcs_jax.model import weights
from rlcs_jax.model.config import ModelConfig

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3")
_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}
# Values transformers uses when a key is absent from config.json (its
# save_pretrained may drop keys that equal the class defaults).
_COMMON_HF_DEFAULTS = dict(
    rms_norm_eps=1e-6, rope_theta=10_000.0, tie_word_embeddings=False
)
_HF_DEFAULTS = {
    "llama": dict(
        _COMMON_HF_DEFAULTS, max_position_embeddings=2048, head_dim=None
    ),
    "qwen2": dict(
        _COMMON_HF_DEFAULTS, max_position_embeddings=32768, head_dim=None
    ),
    "qwen3": dict(
        _COMMON_HF_DEFAULTS, max_position_embeddings=32768, head_dim=128
    ),
}
_INDEX_FILE = "model.safetensors.index.json"
_SINGLE_FILE = "model.safetensors"
_TORCH_DTYPES = {
    "float32": "float32",
    "bfloat16": "bfloat16",
    "float16": "float16",
}


# ----------------------------------------------------------------------------
# Config mapping.


def _rope_theta(hf_cfg: Mapping[str, Any], default: float) -> float:
  """Reads rope theta (transformers 4 or 5 layout); rejects rope scaling."""
  params = hf_cfg.get("rope_parameters") or {}
  scaling = hf_cfg.get("rope_scaling") or {}
  for section in (params, scaling):
    rope_type = section.get("rope_type", section.get("type", "default"))
    if rope_type not in (None, "default"):
      raise ValueError(
          f"rope scaling {rope_type!r} is not supported (only plain RoPE); "
          f"config has rope_parameters={params} rope_scaling={scaling}"
      )
  theta = params.get("rope_theta", hf_cfg.get("rope_theta"))
  return float(default if theta is None else theta)


def hf_config_to_model_config(
    hf_cfg: Mapping[str, Any], **overrides: Any
) -> ModelConfig:
  """Maps a Hugging Face `config.json` dict to a `ModelConfig`.

  Args:
    hf_cfg: the parsed config.json (model_type llama, qwen2 or qwen3).
    **overrides: other `ModelConfig` fields (param_dtype, dtype, remat, ...).

  Raises:
    ValueError: for an unsupported model type or feature.
  """
  model_type = hf_cfg.get("model_type")
  if model_type not in SUPPORTED_MODEL_TYPES:
    raise ValueError(
        f"unsupported model_type {model_type!r}; expected one of "
        f"{SUPPORTED_MODEL_TYPES}"
    )
  defaults = _HF_DEFAULTS[model_type]

  def get(key):
    value = hf_cfg.get(key)
    return defaults[key] if value is None else value

  act = hf_cfg.get("hidden_act", "silu")
  if act != "silu":
    raise ValueError(f"hidden_act {act!r} is not supported (SwiGLU only)")
  if hf_cfg.get("mlp_bias"):
    raise ValueError("mlp_bias=True is not supported")
  if model_type != "qwen2" and hf_cfg.get("attention_bias"):
    raise ValueError(
        f"attention_bias=True is not supported for {model_type} "
        "(it also biases o_proj)"
    )
  if hf_cfg.get("use_sliding_window"):
    raise ValueError("use_sliding_window=True is not supported")
  d, n = int(hf_cfg["hidden_size"]), int(hf_cfg["num_attention_heads"])
  head_dim = get("head_dim")
  fields = dict(
      vocab_size=int(hf_cfg["vocab_size"]),
      d_model=d,
      num_layers=int(hf_cfg["num_hidden_layers"]),
      num_heads=n,
      num_kv_heads=int(hf_cfg.get("num_key_value_heads") or n),
      head_dim=int(head_dim) if head_dim else d // n,
      mlp_dim=int(hf_cfg["intermediate_size"]),
      max_seq_len=int(get("max_position_embeddings")),
      rope_theta=_rope_theta(hf_cfg, defaults["rope_theta"]),
      rms_eps=float(get("rms_norm_eps")),
      tie_embeddings=bool(get("tie_word_embeddings")),
      qkv_bias=model_type == "qwen2",
      qk_norm=model_type == "qwen3",
  )
  fields.update(overrides)
  return ModelConfig(**fields)


def model_config_to_hf_config(cfg: ModelConfig) -> dict[str, Any]:
  """Maps a `ModelConfig` to a Hugging Face `config.json` dict."""
  if cfg.qkv_bias and cfg.qk_norm:
    raise ValueError(
        "qkv_bias together with qk_norm has no Hugging Face " "model type"
    )
  model_type = "qwen2" if cfg.qkv_bias else "qwen3" if cfg.qk_norm else "llama"
  hf = {
      "architectures": [_ARCHITECTURES[model_type]],
      "model_type": model_type,
      "vocab_size": cfg.vocab_size,
      "hidden_size": cfg.d_model,
      "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_heads,
      "num_key_value_heads": cfg.num_kv_heads,
      "head_dim": cfg.head_dim,
      "intermediate_size": cfg.mlp_dim,
      "max_position_embeddings": cfg.max_seq_len,
      "rms_norm_eps": cfg.rms_eps,
      "rope_theta": cfg.rope_theta,
      "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
      "tie_word_embeddings": cfg.tie_embeddings,
      "hidden_act": "silu",
      "mlp_bias": False,
      "torch_dtype": _TORCH_DTYPES[cfg.param_dtype],
  }
  if model_type != "qwen2":
    hf["attention_bias"] = False
  return hf


# ----------------------------------------------------------------------------
# Hugging Face import.


def _tensor_files(path: str) -> list[str]:
  index = os.path.join(path, _INDEX_FILE)
  if os.path.exists(index):
    with open(index) as f:
      weight_map = json.load(f)["weight_map"]
    return sorted({os.path.join(path, name) for name in weight_map.values()})
  files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
  if not files:
    raise FileNotFoundError(f"no *.safetensors files in {path}")
  return files


def read_hf_config(path: str) -> dict[str, Any]:
  """Reads `config.json` from a checkpoint directory."""
  config_file = os.path.join(path, "config.json")
  if not os.path.exists(config_file):
    raise FileNotFoundError(f"no config.json in {path}")
  with open(config_file) as f:
    return json.load(f)


def load_hf_checkpoint(
    path: str,
    *,
    param_dtype: str = "float32",
    shardings: weights.ShardingsArg = None,
    mesh: jax.sharding.Mesh | None = None,
    rules: weights.LogicalRules | None = None,
    **overrides: Any,
) -> tuple[ModelConfig, weights.Params]:
  """Loads a Llama / Qwen2 / Qwen3 safetensors checkpoint directory.

  Args:
    path: directory with config.json and model.safetensors or shards plus
      model.safetensors.index.json.
    param_dtype: dtype of the returned parameters (and of the config).
    shardings: pytree of shardings matching the params, or a function
      `ModelConfig -> pytree`; each parameter is placed directly on it.
    mesh: alternatively, a mesh; shardings then come from the parameters'
      logical axis names and `rules`.
    rules: logical axis rules, e.g. (("embed", "fsdp"), ("heads", "tensor")).
    **overrides: other `ModelConfig` fields (dtype, cache_dtype, remat, ...).

  Returns:
    (config, params) with params ready for `Transformer(cfg).apply`.

  Raises:
    ValueError: unsupported config, missing/unexpected tensors, or a tensor
      whose shape does not match the config.
  """
  cfg = hf_config_to_model_config(
      read_hf_config(path), param_dtype=param_dtype, **overrides
  )
  specs = weights.tensor_specs(cfg)
  target = weights.resolve_shardings(cfg, shardings, mesh, rules)
  with contextlib.ExitStack() as stack:
    where = {}
    for file in _tensor_files(path):
      handle = stack.enter_context(safetensors.safe_open(file, "numpy"))
      for name in handle.keys():
        where[name] = handle
    # Tied models sometimes still ship a copy of the embedding as lm_head.
    ignored = ("lm_head.weight",) if cfg.tie_embeddings else ()
    weights.check_tensor_names(list(where), specs, path, ignored)

    def read(spec: weights.TensorSpec) -> np.ndarray:
      handle = where[spec.hf_name]
      shape = tuple(handle.get_slice(spec.hf_name).get_shape())
      if shape != spec.hf_shape:  # Checked before reading the data.
        raise ValueError(
            f"{path}: tensor {spec.hf_name} has shape {shape}, "
            f"expected {spec.hf_shape}"
        )
      return handle.get_tensor(spec.hf_name)

    params = weights.params_from_host_tensors(cfg, specs, read, target, path)
  return cfg, params


# ----------------------------------------------------------------------------
# Hugging Face export.


def _to_host(x: Any) -> np.ndarray:
  """Gathers one (possibly sharded, possibly multi-host) array to the host."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def save_hf_checkpoint(
    params: weights.Params,
    cfg: ModelConfig,
    out_dir: str,
    *,
    max_shard_bytes: int = 2**31,
) -> list[str]:
  """Writes config.json and safetensors shards that transformers can load.

  Parameters are gathered to the host one at a time and written in their own
  dtype; a shard is flushed before it would exceed `max_shard_bytes`. One
  shard is written as model.safetensors, several as
  model-0000i-of-0000n.safetensors with model.safetensors.index.json (the
  Hugging Face conventions). Every process must call this (sharded arrays
  are gathered collectively); only process 0 writes.

  Returns:
    The written safetensors file paths.
  """
  specs = weights.tensor_specs(cfg)
  params = nn.unbox(params)  # Accept params still boxed with axis names.
  writer = jax.process_index() == 0
  if writer:
    os.makedirs(out_dir, exist_ok=True)
  shards: list[list[str]] = []  # Tensor names per shard.
  temp_files: list[str] = []
  current: dict[str, np.ndarray] = {}
  current_bytes = total_bytes = 0

  def flush():
    nonlocal current, current_bytes
    if not current:
      return
    temp = os.path.join(out_dir, f".shard-{len(shards)}.tmp")
    if writer:
      safetensors.numpy.save_file(current, temp, metadata={"format": "pt"})
    shards.append(list(current))
    temp_files.append(temp)
    current, current_bytes = {}, 0

  for spec in specs:
    w = spec.to_hf(_to_host(weights.leaf_at(params, spec.path)))
    if current and current_bytes + w.nbytes > max_shard_bytes:
      flush()
    current[spec.hf_name] = w
    current_bytes += w.nbytes
    total_bytes += w.nbytes
  flush()

  n = len(shards)
  names = (
      [_SINGLE_FILE]
      if n == 1
      else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
  )
  files = [os.path.join(out_dir, name) for name in names]
  if writer:
    # Shards of an earlier save into the same directory would otherwise be
    # picked up by a loader that globs *.safetensors.
    for old in glob.glob(os.path.join(out_dir, "model*.safetensors")):
      if old not in files:
        os.remove(old)
    for temp, final in zip(temp_files, files):
      os.replace(temp, final)
    index_file = os.path.join(out_dir, _INDEX_FILE)
    if n > 1:
      index = {
          "metadata": {"total_size": total_bytes},
          "weight_map": {
              tensor: name
              for name, tensors in zip(names, shards)
              for tensor in tensors
          },
      }
      with open(index_file, "w") as f:
        json.dump(index, f, indent=2)
    elif os.path.exists(index_file):
      os.remove(index_file)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
      json.dump(model_config_to_hf_config(cfg), f, indent=2)
  return files
