"""Settings and helpers shared by both sides of the benchmark.

Both `bench_jax` (ours) and `bench_torch` (Hugging Face / TRL / PyTorch)
import this module and nothing from each other, so the two frameworks never
share a process: every measurement runs in its own worker process, which is
also what makes the per-section peak RSS honest.

Shape legend: B batch, P prompt length, T new tokens, L sequence length.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import statistics
import time
from typing import Any, Callable, Sequence

import numpy as np

# The SmolLM2 export and the tiny export live under these names in the
# benchmark's work directory.
MODELS = ("tiny", "smollm2")
TINY_SEED = 0

# GRPO prompts (plain text, not chat-formatted, so both sides tokenize the
# same string the same way).
GRPO_PROMPTS = (
    "Write a short story about a lighthouse keeper who finds a letter.",
    "Describe a city market at dawn, in the voice of a tired baker.",
    "Tell a fable about a fox, a crow and a broken promise.",
    "Write the opening paragraph of a mystery set on a night train.",
)


@dataclasses.dataclass(frozen=True)
class Settings:
  """What every section measures (full run or `--quick`)."""

  reps: int  # Timed repetitions (the median is reported).
  torch_reps: int  # Repetitions of the slow eager baselines.
  decode_models: tuple[str, ...]
  decode_prompt: int
  decode_new: int
  decode_batches: tuple[int, ...]
  train_models: tuple[str, ...]
  train_batch: int
  train_seq: int
  grpo_models: tuple[str, ...]
  grpo_prompts: int
  grpo_samples: int
  grpo_new: int
  grpo_beta: float
  scaling_decode_models: tuple[str, ...]
  scaling_decode_batch: int
  scaling_new: tuple[int, ...]
  scaling_train_models: tuple[str, ...]
  scaling_seqs: tuple[int, ...]
  matmul_size: int
  # Compute dtypes of the train and GRPO sections, each measured against the
  # baseline in the same dtype (float32 everywhere; bfloat16 = bf16 matmul
  # inputs with float32 accumulation and float32 master weights for ours,
  # `torch.autocast` bf16 for PyTorch, `bf16=True` for TRL).
  dtypes: tuple[str, ...] = ("float32", "bfloat16")


FULL = Settings(
    reps=5,
    torch_reps=3,
    decode_models=("tiny", "smollm2"),
    decode_prompt=64,
    decode_new=128,
    decode_batches=(1, 8, 32),
    train_models=("tiny", "smollm2"),
    train_batch=8,
    train_seq=256,
    grpo_models=("smollm2",),
    grpo_prompts=4,
    grpo_samples=4,
    grpo_new=128,
    grpo_beta=0.04,
    scaling_decode_models=("tiny", "smollm2"),
    scaling_decode_batch=8,
    scaling_new=(64, 128, 256, 512),
    scaling_train_models=("tiny", "smollm2"),
    scaling_seqs=(128, 256, 512),
    matmul_size=2048,
)

# Small shapes on the tiny model only: a smoke run (and the unit test). Shapes
# repeat across sections where they can, so in-process runs reuse compiles.
QUICK = Settings(
    reps=2,
    torch_reps=1,
    decode_models=("tiny",),
    decode_prompt=16,
    decode_new=16,
    decode_batches=(2,),
    train_models=("tiny",),
    train_batch=2,
    train_seq=32,
    grpo_models=("tiny",),
    grpo_prompts=2,
    grpo_samples=2,
    grpo_new=8,
    grpo_beta=0.04,
    scaling_decode_models=("tiny",),
    scaling_decode_batch=2,
    scaling_new=(8, 16),
    scaling_train_models=("tiny",),
    scaling_seqs=(16, 32),
    matmul_size=256,
)


_DTYPE_TAGS = {"bfloat16": "bf16"}


def key(model: str, dtype: str) -> str:
  """A section's result key: the model name, suffixed unless float32."""
  return model if dtype == "float32" else f"{model} {_DTYPE_TAGS[dtype]}"


def settings(quick: bool, models: Sequence[str] | None = None) -> Settings:
  """The full or quick settings; `models` replaces every section's models.

  "test" (the unit-test preset, random weights) is accepted too: the smoke
  test of the benchmark runs `--quick --models test`.
  """
  st = QUICK if quick else FULL
  if not models:
    return st
  unknown = set(models) - set(MODELS + ("test",))
  if unknown:
    raise ValueError(f"unknown models {sorted(unknown)}; known: {MODELS}")
  models = tuple(models)
  return dataclasses.replace(
      st,
      decode_models=models,
      train_models=models,
      grpo_models=models,
      scaling_decode_models=models,
      scaling_train_models=models,
  )


def prompt_tokens(
    vocab_size: int, batch: int, length: int, seed: int = 1
) -> np.ndarray:
  """Random prompt ids [B, P], identical on both sides (ids 3.. to skip
  the usual special tokens)."""
  rng = np.random.default_rng(seed)
  return rng.integers(3, vocab_size, (batch, length), dtype=np.int64)


def train_tokens(
    vocab_size: int, batch: int, length: int, seed: int = 2
) -> np.ndarray:
  """Random training sequences [B, L + 1] (inputs and shifted targets)."""
  rng = np.random.default_rng(seed)
  return rng.integers(3, vocab_size, (batch, length + 1), dtype=np.int64)


def code_reward(text: str) -> float:
  """The GRPO benchmark's reward: lexical diversity of the completion.

  Cheap, deterministic Python, the same function on both sides.
  """
  words = text.split()
  if not words:
    return 0.0
  return len(set(words)) / len(words) + 0.01 * min(len(words), 50)


# Train steps get a second warm-up call: the first compiles, and with
# `host_memory.reuse_freed_memory()` the heap can still grow (fault in new
# pages) on the first few steps until freed blocks fit the next requests.
TRAIN_WARMUP = 2


def timed(fn: Callable[[], Any], reps: int, warmup: int = 1) -> dict:
  """Runs `fn` warmup + reps times; fn must block until its work is done.

  Returns {"first_s": first call (compile + run), "median_s", "times_s"}.
  """
  start = time.perf_counter()
  fn()
  first = time.perf_counter() - start
  for _ in range(warmup - 1):
    fn()
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return {
      "first_s": first,
      "median_s": statistics.median(times),
      "times_s": times,
  }


def peak_rss_mb() -> float:
  """Peak resident set size of this process so far, in MiB."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def num_cores() -> int:
  """Cores this process may run on (what XLA's CPU client uses)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # Not Linux.
    return os.cpu_count() or 1


def median(xs: Sequence[float]) -> float:
  return statistics.median(xs)
