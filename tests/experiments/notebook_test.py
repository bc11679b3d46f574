"""experiments/colab_tpu.ipynb executes end to end on CPU (nbclient)."""

import json
import os

import nbformat
from nbclient import NotebookClient

REPO = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)
NOTEBOOK = os.path.join(REPO, "experiments", "colab_tpu.ipynb")


def _outputs(cell) -> str:
  return "".join(o.get("text", "") for o in cell.get("outputs", []))


def test_notebook_runs_the_tiny_config(tmp_path, monkeypatch):
  # The kernel inherits this environment: one CPU device, like main_test.
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
  workdir = str(tmp_path / "run")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  params = [
      i
      for i, c in enumerate(nb.cells)
      if "parameters" in c.metadata.get("tags", [])
  ]
  assert len(params) == 1
  nb.cells.insert(
      params[0] + 1,
      nbformat.v4.new_code_cell(
          f'CONFIG = "configs/tiny.py:test"\n'
          f"WORKDIR = {workdir!r}\n"
          f"EXTRA_ARGS = {['--config.sft.num_samples=1']!r}\n"
          "SHOW_TENSORBOARD = False\n"
      ),
  )
  # Started inside experiments/: the install cell must find the checkout.
  NotebookClient(
      nb,
      timeout=600,
      kernel_name="python3",
      resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}},
  ).execute()

  text = "\n".join(_outputs(c) for c in nb.cells if c.cell_type == "code")
  assert f"inside the repo at {REPO}: install skipped" in text
  assert "backend cpu" in text and "CpuDevice(id=0)" in text  # Devices.
  assert "job sft, model test, mesh {'data': 1, 'fsdp': 1, 'tensor': 1}" in text
  assert "TensorBoard: off" in text
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  assert any(r["stage"] == "sft" and "loss" in r for r in rows)
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["sft"]["num_samples"] == 1  # EXTRA_ARGS applied.
