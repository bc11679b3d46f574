"""Our parameter pytree's checkpoint contract, and params from host arrays.

Owns the name and layout contract between Hugging Face Llama / Qwen2 / Qwen3
checkpoint tensors and `Transformer` parameters (`tensor_specs`, checked
against the model by `check_against_model`), the params' shardings from
their logical axis names, and `params_from_host_tensors`, which builds the
params tensor by tensor from Hugging Face-layout host arrays and places each
directly on its target sharding. Both importers build on it:
`model/hf_checkpoint.py` (safetensors import and export) and
`model/gguf_import.py` (a GGUF tensor is first brought into the Hugging Face
layout, then converted like a safetensors one).

Layouts: a Hugging Face `nn.Linear` weight is [out, in]; ours is [in..., out...]
with the head axes split out, e.g. q_proj [N*H, D] -> q [D, N, H] and
o_proj [D, N*H] -> o [N, H, D]. Conversion is a transpose plus a reshape, so
import -> export is bit-exact.

Shape legend: D model, N heads, K kv heads, H head dim, F mlp, V vocab.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rlcs_jax.model import transformer
from rlcs_jax.model.config import ModelConfig, dtype_of

Params = dict[str, Any]
# A pytree of shardings matching the params, or a function of the config
# returning one (the config is only known once the checkpoint is read).
ShardingsArg = Any | Callable[[ModelConfig], Any] | None
LogicalRules = Sequence[tuple[str, Any]]

# Buffers some checkpoints carry that are recomputed by our model.
_IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)


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


def leaf_at(tree: Mapping, path: Sequence[str]) -> Any:
  """The value of nested mappings at `path` (keys, outermost first)."""
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
    sharding = None if shardings is None else leaf_at(shardings, spec.path)
    _set(params, spec.path, place(host, sharding))
  return params
