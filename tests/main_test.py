"""`python -m rlcs_jax.main` smoke runs and CLI errors."""

import json
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
  return subprocess.run(
      [sys.executable, "-m", "rlcs_jax.main", *args],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=timeout,
  )


def test_tiny_sft_smoke_and_rerun_skips(tmp_path):
  workdir = str(tmp_path / "w")
  out = _main("--config", "configs/tiny.py:test", "--workdir", workdir)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "=== CONTINUATION" in out.stdout
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["sft"]["steps"] == 6
  assert os.path.exists(os.path.join(workdir, "metrics.jsonl"))
  again = _main("--config", "configs/tiny.py:test", "--workdir", workdir)
  assert again.returncode == 0 and "already finished" in again.stderr


def test_unknown_config_key_names_nearest(tmp_path):
  out = _main(
      "--config",
      "configs/tiny.py:test",
      "--workdir",
      str(tmp_path),
      "--config.sft.stepz=3",
  )
  assert out.returncode == 2
  assert "unknown config key 'sft.stepz'" in out.stderr
  assert "Did you mean: sft.steps" in out.stderr


def test_checkpoint_config_mismatch_is_named(tmp_path):
  workdir = str(tmp_path / "w")
  assert (
      _main(
          "--config",
          "configs/tiny.py:test",
          "--workdir",
          workdir,
          "--config.sft.steps=3",
          "--config.sft.num_samples=0",
      ).returncode
      == 0
  )
  # Drop the finished marker so the stage tries to resume its checkpoint.
  shutil.rmtree(os.path.join(workdir, "sft", "final_params"))
  out = _main(
      "--config",
      "configs/tiny.py:test",
      "--workdir",
      workdir,
      "--config.sft.steps=6",
      "--config.model.d_model=48",
  )
  assert out.returncode != 0
  assert "model.d_model: checkpoint=32 config=48" in out.stderr
