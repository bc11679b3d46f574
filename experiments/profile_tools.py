"""Timing, trace and input helpers of the CPU profiles (`cpu_profile`).

Owns the interleaved timing of alternative implementations (drift hits all
alike), the share of executed op time per kind of XLA op read from a
`jax.profiler` trace, and random SmolLM2-shaped weights and prompts.
"""

from __future__ import annotations

import collections
import glob
import re
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from experiments import bench_setup as bs
from rlcs_jax.model.config import ModelConfig
from rlcs_jax.model.transformer import Transformer


def median_s(fn, reps: int = 5) -> float:
  return bs.timed(fn, reps)["median_s"]


def interleaved_median_s(runs: dict, reps: int) -> dict:
  """Median seconds of each no-argument run (after one compiling call),
  timed in turn rep by rep so that machine drift hits all of them alike."""
  for fn in runs.values():
    jax.block_until_ready(fn())
  times = collections.defaultdict(list)
  for _ in range(reps):
    for key, fn in runs.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[key].append(time.perf_counter() - start)
  return {key: float(np.median(ts)) for key, ts in times.items()}


def random_params(cfg: ModelConfig):
  return jax.jit(
      lambda: nn.meta.unbox(
          Transformer(cfg).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
      )["params"]
  )()


def random_prompts(cfg: ModelConfig, batch: int, length: int):
  """(tokens, valid) of `batch` random full-length prompts."""
  rng = np.random.default_rng(0)
  tokens = rng.integers(3, cfg.vocab_size, (batch, length))
  return jnp.asarray(tokens, jnp.int32), jnp.ones((batch, length), bool)


def op_time_breakdown(fn, what: str, top: int = 6, sources=None) -> None:
  """Share of executed op time per kind of XLA op, from a profiler trace.

  With `sources` (HLO instruction name -> source op name), per kind and
  source op instead.
  """
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    fn()
    jax.profiler.stop_trace()
    path = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0]
    data = jax.profiler.ProfileData.from_file(path)
  kinds = collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      for ev in line.events:
        if re.match(r"(ThunkExecutor|SlinkyThreadPool|end:)", ev.name):
          continue
        if "Eigen" in line.name or "XLA" in line.name:
          kind = re.sub(r"[.\d]+$", "", ev.name)
          if sources is not None:
            kind = f"{kind}  {sources.get(ev.name, '?')}"
          kinds[kind] += ev.duration_ns
  total_ns = sum(kinds.values())
  print(f"  executed op time {total_ns / 1e9:.2f} s ({what}):")
  for kind, ns in kinds.most_common(top):
    print(f"    {100 * ns / total_ns:5.1f}%  {kind}")
