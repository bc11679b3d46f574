"""experiments/launch.py: real sweeps of the tiny config, resume, failures."""

import csv
import math
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from experiments import launch

REPO = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)


def _launch(*args, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
  return subprocess.run(
      [sys.executable, "-m", "experiments.launch", *args],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=timeout,
  )


def _rows(root):
  with open(os.path.join(root, "summary.csv")) as f:
    return {r["point"]: r for r in csv.DictReader(f)}


def test_point_names_are_stable_safe_and_unique():
  assert launch.point_name({"optim.lr": 1e-3}) == "optim.lr=0.001"
  assert launch.point_name({"a.b": "x/y z", "c": True}) == launch.point_name(
      {"a.b": "x/y z", "c": True}
  )
  name = launch.point_name({"a.b": "x/y z"})
  assert "/" not in name and " " not in name
  assert name != launch.point_name({"a.b": "x_y_z"})  # Hash tells them apart.
  assert len(launch.point_name({"k": "v" * 300})) <= 109


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
  """The tiny config's own 2-point sweep, run once, 2 points at a time."""
  root = str(tmp_path_factory.mktemp("tiny") / "sweep")
  out = _launch(
      "--config", "configs/tiny.py:test", "--parallel", "2", "--root", root
  )
  return root, out


def test_tiny_two_point_sweep_then_rerun_skips(tiny_sweep):
  root, out = tiny_sweep
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  rows = _rows(root)
  assert sorted(rows) == ["optim.lr=0.001", "optim.lr=0.003"]
  for name, row in rows.items():
    assert row["status"] == "ok"
    assert float(row["optim.lr"]) == float(name.split("=")[1])
    assert math.isfinite(float(row["sft/loss"]))  # Last train row of sft.
    assert math.isfinite(float(row["sft/eval_loss"]))
    assert os.path.exists(os.path.join(root, name, "metrics.jsonl"))
  with open(os.path.join(root, "summary.md")) as f:
    md = f.read()
  assert "optim.lr=0.001" in md and "sft/loss" in md
  metrics = os.path.join(root, "optim.lr=0.001", "metrics.jsonl")
  mtime = os.path.getmtime(metrics)

  again = _launch("--config", "configs/tiny.py:test", "--root", root)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count("[skip]") == 2 and "[start]" not in again.stdout
  rows = _rows(root)
  assert {r["status"] for r in rows.values()} == {"skipped"}
  assert math.isfinite(float(rows["optim.lr=0.001"]["sft/loss"]))
  assert os.path.getmtime(metrics) == mtime


def test_failing_point_is_reported_and_an_interrupted_one_resumes(
    tiny_sweep, tmp_path
):
  config = tmp_path / "crash_sweep.py"
  config.write_text(textwrap.dedent("""
      from configs import tiny
      get_config = tiny.get_config

      def sweep(add, arg=None):
        add(**{"mesh.data": 3})  # 3 devices on a 1-device host: crashes.
        add(**{"optim.lr": 1e-3})
  """))
  root = str(tmp_path / "sweep")
  # The second point as an interrupted run left it: a workdir whose stages
  # are on disk but no launch marker. It must rerun there (main then skips
  # its finished stage) after the first point crashed.
  shutil.copytree(
      os.path.join(tiny_sweep[0], "optim.lr=0.001"),
      os.path.join(root, "optim.lr=0.001"),
      ignore=shutil.ignore_patterns(launch.DONE_FILE),
  )
  out = _launch("--config", f"{config}:test", "--root", root)
  assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
  assert out.stdout.index("[start] mesh.data=3") < out.stdout.index(
      "[start] optim.lr=0.001"
  )
  rows = _rows(root)
  bad, good = rows["mesh.data=3"], rows["optim.lr=0.001"]
  assert bad["status"] == "failed" and bad["exit_code"] == "1"
  assert good["status"] == "ok" and math.isfinite(float(good["sft/loss"]))
  with open(os.path.join(root, "optim.lr=0.001", launch.LOG_FILE)) as f:
    assert "already finished" in f.read()  # Resumed, not retrained.
  with open(os.path.join(root, "summary.md")) as f:
    md = f.read()
  assert "failed: mesh.data=3 (exit code 1)" in md
  assert "needs 3 devices" in md  # The tail of the point's own log.

  # A rerun retries only the failed point.
  again = _launch("--config", f"{config}:test", "--root", root)
  assert again.returncode == 1
  assert "[skip] optim.lr=0.001" in again.stdout
  assert "[start] mesh.data=3" in again.stdout
  assert "[failed] mesh.data=3 (exit 1" in again.stdout


def test_invalid_key_stops_before_anything_runs(tmp_path):
  config = tmp_path / "typo_sweep.py"
  config.write_text(textwrap.dedent("""
      from configs import tiny
      get_config = tiny.get_config

      def sweep(add, arg=None):
        add(**{"optim.lr": 1e-3})
        add(**{"optim.lrr": 1e-3})
  """))
  root = tmp_path / "sweep"
  out = _launch("--config", f"{config}:test", "--root", str(root))
  assert out.returncode == 2
  assert "unknown config key 'optim.lrr'" in out.stderr
  assert "Did you mean: optim.lr" in out.stderr
  assert not root.exists()


def test_final_metrics_reads_last_values_and_results_files(tmp_path):
  w = tmp_path / "w"
  (w / "grpo").mkdir(parents=True)
  (w / "checkpoints").mkdir()
  (w / "metrics.jsonl").write_text(
      '{"step": 1, "stage": "sft", "loss": 3.0}\n'
      '{"step": 2, "stage": "sft", "loss": 2.0}\n'
      '{"step": 2, "stage": "sft", "eval_loss": 2.5}\n'
      '{"step": 1, "stage": "grpo", "reward": 0.1}\n'
      '{"step": 2, "stage": "gr'
  )  # Cut by a kill: ignored.
  (w / "rlcs_results.json").write_text(
      '{"genrm_grpo": {"agreement": 0.7}, "win": [0.6, 0.1]}'
  )
  (w / "grpo" / "results.json").write_text('{"after": {"reward": 0.5}}')
  (w / "checkpoints" / "results.json").write_text('{"x": 1}')
  assert launch.final_metrics(str(w)) == {
      "sft/step": 2,
      "sft/loss": 2.0,
      "sft/eval_loss": 2.5,
      "grpo/step": 1,
      "grpo/reward": 0.1,
      "rlcs_results.genrm_grpo.agreement": 0.7,
      "rlcs_results.win.0": 0.6,
      "rlcs_results.win.1": 0.1,
      "grpo/results.after.reward": 0.5,
  }
