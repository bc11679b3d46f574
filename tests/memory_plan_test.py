"""rlcs_jax/memory_plan.py: per-device state bytes without allocating."""

import json
import math
import os
import subprocess
import sys

import jax
import pytest

from rlcs_jax import config_keys
from rlcs_jax import memory_plan
from rlcs_jax import sharding as shd
from rlcs_jax.model.config import ModelConfig
from rlcs_jax.trainers import state as state_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_CONFIGS = (
    "configs/rlcs_qwen2p5_7b.py",
    "configs/rlmr_qwen3_8b.py",
    "configs/rlcs_qwen2p5_32b.py",
)


def _config(spec, **overrides):
  c = config_keys.load_config_file(os.path.join(REPO, spec))
  with c.unlocked():
    for key, value in overrides.items():
      *parents, leaf = key.split(".")
      section = c
      for p in parents:
        section = section[p]
      section[leaf] = value
  return c


def _plan_cli(spec, devices, *overrides):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  return subprocess.run(
      [
          sys.executable,
          "-m",
          "rlcs_jax.memory_plan",
          "--config",
          spec,
          "--json",
          *overrides,
      ],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
  )


def test_abstract_state_matches_the_trainers():
  c = _config(
      "configs/tiny.py", **{"mesh.data": 1, "mesh.fsdp": 4, "mesh.tensor": 2}
  )
  cfg = ModelConfig.from_config(c.model)
  mesh = shd.make_mesh(dict(c.mesh))
  rules = tuple(tuple(r) for r in c.sharding_rules)
  tx = state_lib.make_optimizer(state_lib.OptimConfig.from_config(c.optim, 1))
  ours = memory_plan.abstract_state(cfg, tx, mesh, rules)
  shardings = state_lib.state_shardings(
      state_lib.param_shardings(cfg, mesh, rules),
      tx,
      state_lib.abstract_params(cfg),
      mesh,
  )
  theirs = state_lib.abstract_state(shardings, cfg, tx)
  assert jax.tree.structure(ours) == jax.tree.structure(theirs)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    assert (a.shape, a.dtype, a.sharding) == (b.shape, b.dtype, b.sharding)


def test_one_device_bytes_are_the_analytic_counts():
  c = _config(
      "configs/tiny.py", **{"mesh.data": 1, "plan.chip_memory_gib": 0.0}
  )
  result = memory_plan.plan(c)
  n = ModelConfig.from_config(c.model).num_params()
  peak = result["peak"]
  assert peak["params"] == 4 * n  # float32
  assert 0 <= peak["optimizer"] - 8 * n <= 64  # mu, nu + step counters.
  assert peak["total"] == (
      2 * peak["params"]
      + peak["optimizer"]
      + peak["reference"]
      + peak["frozen"]
  )
  assert result["fits"] is None  # No chip to check against.


def test_reference_counted_only_when_beta_positive():
  on = memory_plan.plan(_config("configs/grpo_tiny.py", **{"grpo.beta": 0.04}))[
      "peak"
  ]
  off = memory_plan.plan(_config("configs/grpo_tiny.py", **{"grpo.beta": 0.0}))[
      "peak"
  ]
  assert on["stage"] == off["stage"] == "grpo"
  assert on["reference"] == on["params"] and off["reference"] == 0
  # grpo_job keeps the SFT params either way: as the reference or frozen.
  assert on["total"] == off["total"]


@pytest.mark.parametrize("spec", PAPER_CONFIGS)
def test_paper_config_fits_its_chip(spec):
  c = _config(spec)
  devices = math.prod(c.mesh[a] for a in shd.MESH_AXES)
  out = _plan_cli(spec, devices)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout)
  assert result["num_devices"] == devices
  assert result["fits"] is True
  assert result["chip_memory_gib"] == c.plan.chip_memory_gib > 0
  peak = result["peak"]
  assert (
      peak["total"]
      <= result["budget_bytes"]
      == int(c.plan.chip_memory_gib * (1 - c.plan.activation_headroom) * 2**30)
  )
  # Really sharded over every device (norms and biases are replicated).
  full = result["num_params"] * 4
  assert full / devices <= peak["params"] <= 1.01 * full / devices
  assert peak["reference"] == (peak["params"] if peak["beta"] > 0 else 0)
  if c.job == "rlcs":  # The GenRM judge and kept stage outputs count too.
    assert peak["stage"] == "rlcs_grpo" and peak["frozen"] > 0


@pytest.mark.parametrize(
    "overrides,devices",
    [
        (("--config.plan.chip_memory_gib=1",), 32),
        (("--config.mesh.fsdp=1", "--config.mesh.tensor=1"), 1),
    ],
)
def test_too_large_for_its_mesh_fails_clearly(overrides, devices):
  out = _plan_cli("configs/rlcs_qwen2p5_32b.py", devices, *overrides)
  assert out.returncode == 1, out.stderr[-3000:]
  result = json.loads(out.stdout)
  assert result["fits"] is False
  total, budget = result["peak"]["total"], result["budget_bytes"]
  assert total > budget
  message = out.stderr
  assert "rlcs does not fit: stage rlcs_grpo needs" in message
  assert f"{total} bytes" in message and "per device" in message
  assert f"limit is {budget} bytes" in message
  assert "plan.chip_memory_gib" in message and "tpu_v5p" in message


@pytest.mark.parametrize(
    "spec",
    [
        f"{s}:{chip}"
        for s in PAPER_CONFIGS
        for chip in ("v5p", "v4", "h100", "v4,test")
    ],
)
def test_paper_config_batches_divide_their_mesh(spec):
  from rlcs_jax.trainers import grpo  # pylint: disable=g-import-not-at-top

  c = _config(spec)
  ModelConfig.from_config(c.model)  # Validates heads, dims, dtypes.
  div = c.mesh.data * c.mesh.fsdp
  for name in ("grpo", "genrm_grpo", "rlcs_grpo", "rlmr_grpo"):
    section = c[name]
    grpo.GRPOConfig.from_config(section, section.max_new_tokens)
    assert section.micro_batch % div == 0, name
  for section in (c.sft, c.genrm.sft):
    assert section.batch_size % section.grad_accum == 0
    assert (section.batch_size // section.grad_accum) % div == 0
  assert max(c.sampler.prompt_buckets) + c.sampler.max_new_tokens <= (
      c.model.max_seq_len
  )
