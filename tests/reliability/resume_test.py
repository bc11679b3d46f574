"""Exact resume of GRPO: interrupted + resumed == uninterrupted, to the bit.

`tests/trainers/grpo_test.py` compares the metrics of the step after a
resume; this compares every step's metrics and the final *parameters*, which
also covers the optimizer state, the prompt iterator state and the per-step
sampling keys (any drift in one of them changes the parameters). SFT's
equivalent is `tests/trainers/sft_test.py::
test_resume_after_stop_matches_uninterrupted`.
"""

import jax
import numpy as np
import pytest

from configs import grpo_tiny
from rlcs_jax import metrics as metrics_lib
from rlcs_jax import preemption
from rlcs_jax.trainers import grpo
from rlcs_jax.trainers import jobs
from rlcs_jax.trainers import setup
from rlcs_jax.trainers import state as state_lib

KEYS = (
    "loss",
    "reward_mean",
    "response_length",
    "kl",
    "grad_norm",
    "ratio_mean",
    "skipped",
)


def test_grpo_interrupted_and_resumed_equals_uninterrupted(tmp_path):
  root = str(tmp_path / "data")
  run = jobs.prepare(grpo_tiny.get_config("test"), root)
  source = setup.datasets(
      "contexts", {"train": run.files["contexts_train"]}, root
  )["train"]
  init = state_lib.init_params(
      run.model_cfg, jax.random.key(0), run.mesh, run.rules
  )

  def train(workdir, stop=None):
    trainer = grpo.GRPOTrainer(
        run.config,
        workdir,
        stage="grpo",
        model_cfg=run.model_cfg,
        tokenizer=run.tokenizer,
        mesh=run.mesh,
        init_params=init,
        reward_components=jobs.code_rewards(run.config.grpo),
    )
    return jax.device_get(
        grpo.train(trainer, source, prompt_kind="contexts", stop=stop)
    )

  full_dir, part_dir = str(tmp_path / "full"), str(tmp_path / "part")
  full = train(full_dir)
  with pytest.raises(preemption.Preempted, match="step 1"):
    train(part_dir, stop=preemption.StopRequest(stop_at_step=1))
  resumed = train(part_dir)

  jax.tree.map(np.testing.assert_array_equal, resumed, full)
  init_host = jax.device_get(init)
  assert any(
      not np.array_equal(a, b)
      for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(init_host))
  )  # It trained.
  want = {m["step"]: m for m in metrics_lib.read_metrics(full_dir, "grpo")}
  got = {m["step"]: m for m in metrics_lib.read_metrics(part_dir, "grpo")}
  assert sorted(got) == sorted(want) == [1, 2, 3]
  for step in want:
    assert {k: got[step][k] for k in KEYS} == {k: want[step][k] for k in KEYS}
