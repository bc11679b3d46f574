"""Hugging Face safetensors checkpoints <-> our parameter pytree.

Owns the name and layout contract between Hugging Face Llama / Qwen2 / Qwen3
checkpoints and `Transformer` parameters (`tensor_specs`), the config mapping
both ways, import (`load_hf_checkpoint`, placing each parameter directly on
its target sharding), export (`save_hf_checkpoint`, sharded safetensors plus
index), and `load_pretrained`, the one entry point trainers call for either
format. `model/gguf_import.py` reuses the same specs: a GGUF tensor is first
brought into the Hugging Face layout, then converted like a safetensors one.

Layouts: a Hugging Face `nn.Linear` weight is [out, in]; ours is [in..., out...]
with the head axes split out, e.g. q_proj [N*H, D] -> q [D, N, H] and
o_proj [D, N*H] -> o [N, H, D]. Conversion is a transpose plus a reshape, so
import -> export is bit-exact.

Shape legend: D model, N heads, K kv heads, H head dim, F mlp, V vocab.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import flax.linen as nn
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.numpy

from rlcs_jax.model import transformer
from rlcs_jax.model.config import ModelConfig, dtype_of

Params = dict[str, Any]
# A pytree of shardings matching the params, or a function of the config
# returning one (the config is only known once the checkpoint is read).
ShardingsArg = Any | Callable[[ModelConfig], Any] | None
LogicalRules = Sequence[tuple[str, Any]]

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3")
_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}
# Values transformers uses when a key is absent from config.json (its
# save_pretrained may drop keys that equal the class defaults).
_HF_DEFAULTS = {
    "llama": dict(
        rms_norm_eps=1e-6,
        rope_theta=10_000.0,
        tie_word_embeddings=False,
        max_position_embeddings=2048,
        head_dim=None,
    ),
    "qwen2": dict(
        rms_norm_eps=1e-6,
        rope_theta=10_000.0,
        tie_word_embeddings=False,
        max_position_embeddings=32768,
        head_dim=None,
    ),
    "qwen3": dict(
        rms_norm_eps=1e-6,
        rope_theta=10_000.0,
        tie_word_embeddings=False,
        max_position_embeddings=32768,
        head_dim=128,
    ),
}
# Buffers some checkpoints carry that are recomputed by our model.
_IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)
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
# Tensor specs: the name / layout contract.


@dataclasses.dataclass(frozen=True)
class TensorSpec:
  """One checkpoint tensor: its Hugging Face name/shape and our path/shape."""

  hf_name: str
  path: tuple[str, ...]  # Keys into our params pytree.
  hf_shape: tuple[int, ...]
  shape: tuple[int, ...]
  linear: bool  # HF [out, in] weight: transposed, not only reshaped.

  def to_ours(self, w: np.ndarray) -> np.ndarray:
    """Hugging Face layout -> ours."""
    return (w.T if self.linear else w).reshape(self.shape)

  def to_hf(self, w: np.ndarray) -> np.ndarray:
    """Our layout -> Hugging Face layout (C-contiguous)."""
    if self.linear:
      return np.ascontiguousarray(w.reshape(self.hf_shape[::-1]).T)
    return np.ascontiguousarray(w.reshape(self.hf_shape))


def _linear(
    name: str,
    path: tuple[str, ...],
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
) -> TensorSpec:
  """An HF Linear weight [prod(out), prod(in)]; ours is [*in, *out]."""
  hf_shape = (int(np.prod(out_shape)), int(np.prod(in_shape)))
  return TensorSpec(name, path, hf_shape, in_shape + out_shape, True)


def _vector(
    name: str, path: tuple[str, ...], shape: tuple[int, ...]
) -> TensorSpec:
  """A norm scale or bias: flat in HF, possibly split into heads in ours."""
  return TensorSpec(name, path, (int(np.prod(shape)),), shape, False)


def tensor_specs(cfg: ModelConfig) -> list[TensorSpec]:
  """Lists every checkpoint tensor of `cfg`, in checkpoint order."""
  d, n, k, h, f, v = (
      cfg.d_model,
      cfg.num_heads,
      cfg.num_kv_heads,
      cfg.head_dim,
      cfg.mlp_dim,
      cfg.vocab_size,
  )
  specs = [
      TensorSpec(
          "model.embed_tokens.weight",
          ("embed", "embedding"),
          (v, d),
          (v, d),
          False,
      )
  ]
  for i in range(cfg.num_layers):
    hf, ours = f"model.layers.{i}", f"layers_{i}"
    attn = f"{hf}.self_attn"
    specs += [
        _vector(
            f"{hf}.input_layernorm.weight", (ours, "attn_norm", "scale"), (d,)
        ),
        _linear(f"{attn}.q_proj.weight", (ours, "attn", "q"), (d,), (n, h)),
        _linear(f"{attn}.k_proj.weight", (ours, "attn", "k"), (d,), (k, h)),
        _linear(f"{attn}.v_proj.weight", (ours, "attn", "v"), (d,), (k, h)),
        _linear(f"{attn}.o_proj.weight", (ours, "attn", "o"), (n, h), (d,)),
    ]
    if cfg.qkv_bias:
      specs += [
          _vector(f"{attn}.q_proj.bias", (ours, "attn", "q_bias"), (n, h)),
          _vector(f"{attn}.k_proj.bias", (ours, "attn", "k_bias"), (k, h)),
          _vector(f"{attn}.v_proj.bias", (ours, "attn", "v_bias"), (k, h)),
      ]
    if cfg.qk_norm:
      specs += [
          _vector(
              f"{attn}.q_norm.weight", (ours, "attn", "q_norm", "scale"), (h,)
          ),
          _vector(
              f"{attn}.k_norm.weight", (ours, "attn", "k_norm", "scale"), (h,)
          ),
      ]
    specs += [
        _vector(
            f"{hf}.post_attention_layernorm.weight",
            (ours, "mlp_norm", "scale"),
            (d,),
        ),
        _linear(
            f"{hf}.mlp.gate_proj.weight", (ours, "mlp", "gate"), (d,), (f,)
        ),
        _linear(f"{hf}.mlp.up_proj.weight", (ours, "mlp", "up"), (d,), (f,)),
        _linear(
            f"{hf}.mlp.down_proj.weight", (ours, "mlp", "down"), (f,), (d,)
        ),
    ]
  specs.append(_vector("model.norm.weight", ("final_norm", "scale"), (d,)))
  if not cfg.tie_embeddings:
    specs.append(_linear("lm_head.weight", ("lm_head", "kernel"), (d,), (v,)))
  return specs


def abstract_params(cfg: ModelConfig) -> Params:
  """Shapes/dtypes of `Transformer(cfg)` params, boxed with logical names."""
  tokens = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  return jax.eval_shape(
      transformer.Transformer(cfg).init, jax.random.key(0), tokens
  )["params"]


def param_shardings(
    cfg: ModelConfig, mesh: jax.sharding.Mesh, rules: LogicalRules
) -> Params:
  """NamedShardings of the params from their logical names and `rules`."""
  specs = nn.get_partition_spec(abstract_params(cfg))
  return nn.logical_to_mesh_sharding(specs, mesh, tuple(rules))


def check_against_model(specs: Sequence[TensorSpec], cfg: ModelConfig):
  """Fails loudly if the specs and `Transformer`'s parameters ever drift."""
  expected = {
      tuple(k.key for k in path): tuple(leaf.shape)
      for path, leaf in jax.tree_util.tree_leaves_with_path(
          nn.unbox(abstract_params(cfg))
      )
  }
  ours = {s.path: s.shape for s in specs}
  if ours != expected:
    raise AssertionError(
        f"weights.tensor_specs out of sync with Transformer:"
        f" specs={sorted(ours.items())} "
        f"model={sorted(expected.items())}"
    )


# ----------------------------------------------------------------------------
# Building params from host tensors.


def _set(tree: dict, path: Sequence[str], value: Any):
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _get(tree: Mapping, path: Sequence[str]) -> Any:
  for key in path:
    tree = tree[key]
  return tree


def place(
    host: np.ndarray, sharding: jax.sharding.Sharding | None
) -> jax.Array:
  """Puts a host array on devices; with a sharding, each device gets its slice.

  `make_array_from_callback` only asks for the slices this process's devices
  hold, so no device ever holds a full copy of a parameter it shards.
  """
  if sharding is None:
    return jnp.asarray(host)
  return jax.make_array_from_callback(
      host.shape, sharding, lambda index: host[index]
  )


def resolve_shardings(
    cfg: ModelConfig,
    shardings: ShardingsArg,
    mesh: jax.sharding.Mesh | None,
    rules: LogicalRules | None,
) -> Params | None:
  """The params' shardings from the loaders' shardings/mesh/rules arguments."""
  if shardings is not None and mesh is not None:
    raise ValueError("pass either shardings or mesh (+ rules), not both")
  if mesh is not None:
    if rules is None:
      raise ValueError("mesh given without logical axis rules")
    return param_shardings(cfg, mesh, rules)
  if callable(shardings):
    return shardings(cfg)
  return shardings


def check_tensor_names(
    found: Sequence[str],
    specs: Sequence[TensorSpec],
    source: str,
    ignored: Sequence[str] = (),
):
  """Raises ValueError naming missing and unexpected tensors."""
  expected = {s.hf_name for s in specs}
  found_set = {
      name
      for name in found
      if not name.endswith(_IGNORED_SUFFIXES) and name not in ignored
  }
  missing = sorted(expected - found_set)
  unexpected = sorted(found_set - expected)
  if missing or unexpected:
    raise ValueError(
        f"{source}: missing tensors {missing}; unexpected "
        f"tensors {unexpected}"
    )


def params_from_host_tensors(
    cfg: ModelConfig,
    specs: Sequence[TensorSpec],
    read: Callable[[TensorSpec], np.ndarray],
    shardings: Params | None,
    source: str,
) -> Params:
  """Builds params tensor by tensor from Hugging Face-layout host arrays.

  Args:
    cfg: the model config (its param_dtype is the dtype of the result).
    specs: `tensor_specs(cfg)`.
    read: returns one tensor in the Hugging Face layout as a host array.
    shardings: pytree of shardings matching the params, or None.
    source: file name for error messages.
  """
  check_against_model(specs, cfg)
  dtype = np.dtype(dtype_of(cfg.param_dtype))
  params: Params = {}
  for spec in specs:
    w = read(spec)
    if tuple(w.shape) != spec.hf_shape:
      raise ValueError(
          f"{source}: tensor {spec.hf_name} has shape "
          f"{tuple(w.shape)}, expected {spec.hf_shape}"
      )
    host = spec.to_ours(np.asarray(w)).astype(dtype, copy=False)
    sharding = None if shardings is None else _get(shardings, spec.path)
    _set(params, spec.path, place(host, sharding))
  return params


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
    shardings: ShardingsArg = None,
    mesh: jax.sharding.Mesh | None = None,
    rules: LogicalRules | None = None,
    **overrides: Any,
) -> tuple[ModelConfig, Params]:
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
  specs = tensor_specs(cfg)
  target = resolve_shardings(cfg, shardings, mesh, rules)
  with contextlib.ExitStack() as stack:
    where = {}
    for file in _tensor_files(path):
      handle = stack.enter_context(safetensors.safe_open(file, "numpy"))
      for name in handle.keys():
        where[name] = handle
    # Tied models sometimes still ship a copy of the embedding as lm_head.
    ignored = ("lm_head.weight",) if cfg.tie_embeddings else ()
    check_tensor_names(list(where), specs, path, ignored)

    def read(spec: TensorSpec) -> np.ndarray:
      handle = where[spec.hf_name]
      shape = tuple(handle.get_slice(spec.hf_name).get_shape())
      if shape != spec.hf_shape:  # Checked before reading the data.
        raise ValueError(
            f"{path}: tensor {spec.hf_name} has shape {shape}, "
            f"expected {spec.hf_shape}"
        )
      return handle.get_tensor(spec.hf_name)

    params = params_from_host_tensors(cfg, specs, read, target, path)
  return cfg, params


# ----------------------------------------------------------------------------
# Hugging Face export.


def _to_host(x: Any) -> np.ndarray:
  """Gathers one (possibly sharded, possibly multi-host) array to the host."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def save_hf_checkpoint(
    params: Params,
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
  specs = tensor_specs(cfg)
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
    w = spec.to_hf(_to_host(_get(params, spec.path)))
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


# ----------------------------------------------------------------------------
# One entry point for trainers.


class Pretrained(NamedTuple):
  """A loaded pretrained model; tokenizer is None when the format has none."""

  config: ModelConfig
  params: Params
  tokenizer: Any


def _load_hf(path: str, **kwargs: Any) -> Pretrained:
  cfg, params = load_hf_checkpoint(path, **kwargs)
  return Pretrained(cfg, params, None)


def _load_gguf(path: str, **kwargs: Any) -> Pretrained:
  # Imported here: gguf_import builds on this module.
  from rlcs_jax.model import gguf_import  # pylint: disable=g-import-not-at-top

  return Pretrained(*gguf_import.load_gguf(path, **kwargs))


PRETRAINED_LOADERS: dict[str, Callable[..., Pretrained]] = {
    "hf": _load_hf,
    "gguf": _load_gguf,
}


def load_pretrained(kind: str, path: str, **kwargs: Any) -> Pretrained:
  """Loads pretrained weights of `kind` ("hf" or "gguf") from `path`.

  Keyword arguments are those of `load_hf_checkpoint` / `load_gguf`
  (param_dtype, shardings or mesh + rules, ModelConfig overrides).
  """
  try:
    loader = PRETRAINED_LOADERS[kind]
  except KeyError:
    raise ValueError(
        f"unknown pretrained kind {kind!r}; expected one of "
        f"{sorted(PRETRAINED_LOADERS)}"
    ) from None
  return loader(path, **kwargs)
