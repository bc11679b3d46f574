"""Mesh building, logical rules, and sharded == unsharded train steps."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from rlcs_jax import sharding as shd
from rlcs_jax.model.config import PRESETS, ModelConfig
from rlcs_jax.trainers import sft
from rlcs_jax.trainers import state as state_lib

RULES = common.DEFAULT_SHARDING_RULES
CFG = ModelConfig(**{**PRESETS["test"], "num_kv_heads": 2})


def test_mesh_shape_fills_minus_one():
  assert shd.mesh_shape({"data": -1, "fsdp": 2, "tensor": 2}, 8) == (2, 2, 2)
  assert shd.mesh_shape({"data": 1, "fsdp": -1, "tensor": 1}, 8) == (1, 8, 1)
  with pytest.raises(ValueError, match="needs 4 devices"):
    shd.mesh_shape({"data": 2, "fsdp": 2, "tensor": 1}, 8)
  with pytest.raises(ValueError, match="at most one"):
    shd.mesh_shape({"data": -1, "fsdp": -1, "tensor": 1}, 8)


def test_param_shardings_follow_rules_and_fall_back():
  mesh = shd.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  sh = state_lib.param_shardings(CFG, mesh, RULES)
  assert sh["layers_0"]["attn"]["q"].spec == jax.P("fsdp", "tensor", None)
  assert sh["layers_0"]["mlp"]["down"].spec == jax.P("tensor", "fsdp")
  odd = ModelConfig(**{**PRESETS["test"], "num_heads": 3, "num_kv_heads": 3})
  sh = state_lib.param_shardings(odd, mesh, RULES)
  # 3 heads cannot split over tensor=2: replicated on that dim instead.
  assert sh["layers_0"]["attn"]["q"].spec == jax.P("fsdp", None, None)


def _batch(seed, b=8, l=16):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(0, CFG.vocab_size, (b, l)).astype(np.int32)
  valid = np.ones((b, l), bool)
  valid[0, 12:] = False
  mask = np.zeros((b, l), np.float32)
  mask[:, 5:11] = 1.0
  return {"tokens": tokens, "valid": valid, "loss_mask": mask}


def _run(mesh_sizes, grad_accum, steps=2):
  devices = jax.devices()[: int(np.prod(list(mesh_sizes.values())))]
  mesh = shd.make_mesh(mesh_sizes, devices)
  rules = RULES
  optim = state_lib.OptimConfig(
      lr=1e-2,
      warmup_steps=0,
      total_steps=10,
      min_lr_ratio=0.1,
      weight_decay=0.01,
      b1=0.9,
      b2=0.98,
      eps=1e-8,
      clip_norm=1.0,
  )
  tx = state_lib.make_optimizer(optim)
  params_sh = state_lib.param_shardings(CFG, mesh, rules)
  shardings = state_lib.state_shardings(
      params_sh, tx, state_lib.abstract_params(CFG), mesh
  )
  params = state_lib.init_params(CFG, jax.random.key(0), mesh, rules)
  state = state_lib.create_state(params, tx, shardings)
  losses = []
  chex.clear_trace_counter()
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    fn = chex.assert_max_traces(sft.make_train_step(CFG, tx, grad_accum), n=1)
    step = sft.jit_train_step(fn, shardings, mesh)
    for i in range(steps):
      state, m = step(state, shd.global_batch(_batch(i), mesh))
      losses.append(float(m["loss"]))
  return losses, jax.device_get(state.params), state


def test_sharded_step_equals_unsharded():
  ref_losses, ref_params, _ = _run({"data": 1, "fsdp": 1, "tensor": 1}, 1)
  losses, params, state = _run({"data": 2, "fsdp": 2, "tensor": 2}, 1)
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
  chex.assert_trees_all_close(params, ref_params, atol=2e-4)
  q = state.params["layers_0"]["attn"]["q"]
  assert q.sharding.spec == jax.P("fsdp", "tensor", None)
  mu = state.opt_state[1][0].mu["layers_0"]["attn"]["q"]
  assert mu.sharding.spec == q.sharding.spec


def test_grad_accum_equals_full_batch():
  ref_losses, ref_params, _ = _run({"data": 1, "fsdp": 1, "tensor": 1}, 1)
  losses, params, _ = _run({"data": 2, "fsdp": 1, "tensor": 1}, 2)
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
  chex.assert_trees_all_close(params, ref_params, atol=2e-4)


def test_host_transfers_in_one_process():
  # Multi-process behaviour: tests/multiprocess_test.py (GRPO rollouts).
  mesh = shd.make_mesh({"data": 4, "fsdp": 2, "tensor": 1}, jax.devices())
  x = np.arange(8 * 3, dtype=np.int32).reshape(8, 3)
  g = shd.global_from_host(x, shd.batch_sharding(mesh))
  assert g.sharding == shd.batch_sharding(mesh)
  assert {s.data.shape for s in g.addressable_shards} == {(1, 3)}
  out = shd.host_from_global({"x": g + 1})
  assert isinstance(out["x"], np.ndarray)
  np.testing.assert_array_equal(out["x"], x + 1)
  records = [{"id": "a", "kwargs": [{"n": 1}]}, {"id": "é"}]
  assert shd.allgather_json(records) == records
