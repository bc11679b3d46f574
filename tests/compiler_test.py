"""compiler.jit: the SFT step updates its Adam moments in place.

The step keeps the old optimizer state on a non-finite gradient
(`numerics.keep_if_finite`). With XLA:CPU's default copy insertion, every
moment was copied before its update; `compiler.COMPILER_OPTIONS` lets the
compiler see that no copy is needed. The test compiles the real sharded
step both ways, so it fails if the option stops taking effect.
"""

import re

import jax
import pytest

from configs import tiny
from rlcs_jax import compiler
from rlcs_jax.trainers import setup
from rlcs_jax.trainers import sft
from rlcs_jax.trainers import state as state_lib


def _input_copies(monkeypatch, options) -> list[str]:
  monkeypatch.setattr(compiler, "COMPILER_OPTIONS", options)
  config = tiny.get_config("test")
  model_cfg = setup.model_config(config, None)
  mesh = setup.make_mesh(config)
  rules = setup.rules(config)
  tx = state_lib.make_optimizer(
      state_lib.OptimConfig.from_config(config.optim, 10)
  )
  params_sh = state_lib.param_shardings(model_cfg, mesh, rules)
  abstract = state_lib.abstract_params(model_cfg)
  shardings = state_lib.state_shardings(params_sh, tx, abstract, mesh)
  step = sft.jit_train_step(
      sft.make_train_step(model_cfg, tx, grad_accum=1), shardings, mesh
  )
  state = jax.eval_shape(
      lambda p: state_lib.TrainState(
          step=jax.numpy.zeros((), jax.numpy.int32),
          params=p,
          opt_state=tx.init(p),
      ),
      abstract,
  )
  batch = {
      "tokens": jax.ShapeDtypeStruct((8, 16), jax.numpy.int32),
      "valid": jax.ShapeDtypeStruct((8, 16), bool),
      "loss_mask": jax.ShapeDtypeStruct((8, 16), jax.numpy.float32),
  }
  with jax.set_mesh(mesh):
    hlo = step.lower(state, batch).compile().as_text()
  # Copies of an input array of the step (the partitioned program names its
  # inputs param.N): here, the two Adam moments of each parameter.
  entry = hlo[hlo.index("\nENTRY") :]
  return re.findall(r"= (f32\[[\d,]+\])\{[\d,]*\} copy\(%param[\w.]*\)", entry)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU only")
def test_sft_step_updates_adam_moments_in_place(monkeypatch):
  assert not _input_copies(monkeypatch, compiler.COMPILER_OPTIONS)
  # Without the options the same step copies the moments (so the test can
  # fail).
  assert _input_copies(monkeypatch, {})
