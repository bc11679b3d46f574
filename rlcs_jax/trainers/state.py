"""TrainState, optimizer and sharded initialisation shared by all trainers.

The state is initialised under `jax.eval_shape` to derive shardings from the
parameters' logical axis names, then created directly on those shardings by
a jitted init (no host copy of the full model). Pretrained weights are placed
onto the same shardings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from rlcs_jax import compiler
from rlcs_jax import sharding as shd
from rlcs_jax.model.config import ModelConfig
from rlcs_jax.model.transformer import Transformer


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  lr: float
  warmup_steps: int
  total_steps: int
  min_lr_ratio: float
  weight_decay: float
  b1: float
  b2: float
  eps: float
  clip_norm: float

  def __post_init__(self):
    if self.lr <= 0 or self.total_steps <= 0:
      raise ValueError(f"optim.lr and the step count must be positive: {self}")
    if not 0 <= self.min_lr_ratio <= 1:
      raise ValueError("optim.min_lr_ratio must be in [0, 1]")

  @classmethod
  def from_config(
      cls, section: ml_collections.ConfigDict, total_steps: int
  ) -> "OptimConfig":
    return cls(
        lr=section.lr,
        warmup_steps=section.warmup_steps,
        total_steps=total_steps,
        min_lr_ratio=section.min_lr_ratio,
        weight_decay=section.weight_decay,
        b1=section.b1,
        b2=section.b2,
        eps=section.eps,
        clip_norm=section.clip_norm,
    )


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
  """AdamW with linear warmup + cosine decay and global-norm clipping."""
  warmup = min(cfg.warmup_steps, max(cfg.total_steps - 1, 0))
  schedule = optax.warmup_cosine_decay_schedule(
      # Start at lr/warmup, not 0, so the first update is never wasted.
      init_value=cfg.lr / max(warmup, 1),
      peak_value=cfg.lr,
      warmup_steps=warmup,
      decay_steps=max(cfg.total_steps, warmup + 1),
      end_value=cfg.lr * cfg.min_lr_ratio,
  )
  decay_mask = lambda p: jax.tree.map(lambda x: x.ndim >= 2, p)
  parts = []
  if cfg.clip_norm > 0:
    parts.append(optax.clip_by_global_norm(cfg.clip_norm))
  parts.append(
      optax.adamw(
          schedule,
          b1=cfg.b1,
          b2=cfg.b2,
          eps=cfg.eps,
          weight_decay=cfg.weight_decay,
          mask=decay_mask,
      )
  )
  return optax.chain(*parts)


def param_logical_specs(model_cfg: ModelConfig) -> Any:
  """Logical PartitionSpecs of the parameter tree (no allocation)."""
  boxed = jax.eval_shape(
      Transformer(model_cfg).init,
      jax.random.key(0),
      jnp.zeros((1, 8), jnp.int32),
  )
  return nn.get_partition_spec(boxed)["params"]


def abstract_params(model_cfg: ModelConfig) -> Any:
  boxed = jax.eval_shape(
      Transformer(model_cfg).init,
      jax.random.key(0),
      jnp.zeros((1, 8), jnp.int32),
  )
  return nn.meta.unbox(boxed)["params"]


def param_shardings(model_cfg: ModelConfig, mesh, rules) -> Any:
  return shd.logical_to_sharding(
      param_logical_specs(model_cfg), abstract_params(model_cfg), mesh, rules
  )


def init_params(model_cfg: ModelConfig, rng: jax.Array, mesh, rules) -> Any:
  """Random init directly onto the parameter shardings."""
  shardings = param_shardings(model_cfg, mesh, rules)

  def init(key):
    variables = Transformer(model_cfg).init(key, jnp.zeros((1, 8), jnp.int32))
    return nn.meta.unbox(variables)["params"]

  return compiler.jit(init, out_shardings=shardings)(rng)


def state_shardings(
    params_sharding: Any, tx: optax.GradientTransformation, abstract: Any, mesh
) -> TrainState:
  """Optimizer moments follow their parameter's sharding."""
  opt_abstract = jax.eval_shape(tx.init, abstract)
  param_leaves = {
      tuple(k): s
      for k, s in jax.tree_util.tree_flatten_with_path(params_sharding)[0]
  }

  def shard_like(path, leaf):
    # Optimizer leaves whose path ends with a parameter path share its
    # sharding (adam mu/nu); scalars (counts) are replicated.
    for n in range(len(path)):
      key = tuple(path[n:])
      if key in param_leaves and param_leaves[key] is not None:
        return param_leaves[key]
    return shd.replicated(mesh)

  opt_shardings = jax.tree_util.tree_map_with_path(shard_like, opt_abstract)
  return TrainState(
      step=shd.replicated(mesh), params=params_sharding, opt_state=opt_shardings
  )


def create_state(
    params: Any, tx: optax.GradientTransformation, shardings: TrainState
) -> TrainState:
  """Builds the state (optimizer init is jitted onto its shardings)."""

  def make(p):
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=p, opt_state=tx.init(p)
    )

  return compiler.jit(make, out_shardings=shardings)(params)


def abstract_state(
    shardings: TrainState,
    model_cfg: ModelConfig,
    tx: optax.GradientTransformation,
) -> TrainState:
  """ShapeDtypeStructs (with shardings) for checkpoint restore."""
  params = abstract_params(model_cfg)
  shapes = TrainState(
      step=jax.ShapeDtypeStruct((), jnp.int32),
      params=params,
      opt_state=jax.eval_shape(tx.init, params),
  )
  return jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      shapes,
      shardings,
  )


def count_params(params: Any) -> int:
  return sum(x.size for x in jax.tree.leaves(params))
