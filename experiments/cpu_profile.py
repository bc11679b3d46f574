"""The profiles behind the README's Performance notes (CPU).

  python -m experiments.cpu_profile [--sections matmul,decode]
  XLA_FLAGS=--xla_cpu_use_onednn=true python -m experiments.cpu_profile \
      --sections decode        # the same decode under another XLA CPU path

matmul  GFLOP/s of the matmuls that bound decode and bf16 training, in JAX
        and (when installed) torch, on the same shapes: decode's small-M f32
        matmul, and the tied SmolLM2 head's weight gradient dW = g^T x in bf16
        written as a dot over the leading axis vs with a pre-transposed x.
decode  a SmolLM2-shaped model (random weights) decoding B=16 x 64 tokens in
        float32: ms per token and the share of executed op time in each
        kind of XLA op, read from a `jax.profiler` trace.
"""

from __future__ import annotations

import argparse
import collections
import glob
import re
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rlcs_jax.model.config import PRESETS, ModelConfig
from rlcs_jax.model.transformer import Transformer
from rlcs_jax.sampler import sampling


def _median_s(fn, reps: int = 5) -> float:
  fn()
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def matmul() -> None:
  f32, bf16 = jnp.float32, jnp.bfloat16

  def dot(contract):
    return jax.jit(
        lambda a, b: jax.lax.dot_general(
            a,
            b,
            ((contract[:1], contract[1:]), ((), ())),
            preferred_element_type=f32,
        )
    )

  m, d, v = 2048, 576, 49152
  cases = [  # (name, fn, lhs shape/dtype, rhs shape/dtype, flops)
      ("decode f32 [32,576]x[576,1536]", dot((1, 0)), (32, 576), (576, 1536)),
      ("head dW bf16 g^T x (leading axis)", dot((0, 0)), (m, v), (m, d)),
      ("head dW bf16 x^T g (pre-transposed)", dot((1, 0)), (d, m), (m, v)),
  ]
  for i, (name, fn, sa, sb) in enumerate(cases):
    dt = f32 if i == 0 else bf16
    a, b = jnp.ones(sa, dt), jnp.ones(sb, dt)
    flops = 2.0 * sa[0] * sa[1] * sb[1] if i != 1 else 2.0 * m * d * v
    secs = _median_s(lambda: fn(a, b).block_until_ready())
    line = f"  {name:40s} jax {flops / secs / 1e9:7.0f} GFLOP/s"
    line += f" ({secs * 1e3:.1f} ms)"
    try:
      import torch  # pylint: disable=g-import-not-at-top

      ta = torch.ones(*sa, dtype=getattr(torch, jnp.dtype(dt).name))
      tb = torch.ones(*sb, dtype=ta.dtype)
      if i == 1:
        tsecs = _median_s(lambda: ta.T @ tb)
      else:
        tsecs = _median_s(lambda: ta @ tb)
      line += f"   torch {flops / tsecs / 1e9:7.0f} GFLOP/s"
    except ImportError:
      line += "   torch not installed"
    print(line, flush=True)


def decode(batch: int = 16, new: int = 64) -> None:
  cfg = ModelConfig(**PRESETS["smollm2_135m"])
  params = jax.jit(
      lambda: nn.meta.unbox(
          Transformer(cfg).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
      )["params"]
  )()
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(3, cfg.vocab_size, (batch, 64)), jnp.int32)
  valid = jnp.ones(tokens.shape, bool)
  scfg = sampling.SamplingConfig(
      max_new_tokens=new, greedy=True, prompt_buckets=(64,)
  )

  def generate():
    jax.block_until_ready(
        sampling.generate_arrays(
            params, tokens, valid, jax.random.key(0), model_cfg=cfg, cfg=scfg
        )
    )

  def prefill():
    jax.block_until_ready(
        sampling.prefill(
            params, tokens, valid, model_cfg=cfg, cache_len=64 + new
        )
    )

  total, pre = _median_s(generate, 3), _median_s(prefill, 3)
  print(f"  B={batch} f32: {1e3 * (total - pre) / new:.1f} ms per token")
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    generate()
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
          kinds[re.sub(r"[.\d]+$", "", ev.name)] += ev.duration_ns
  total_ns = sum(kinds.values())
  print(f"  executed op time {total_ns / 1e9:.2f} s (prefill + decode):")
  for kind, ns in kinds.most_common(6):
    print(f"    {100 * ns / total_ns:5.1f}%  {kind}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sections", default="matmul,decode")
  args = parser.parse_args()
  for section in args.sections.split(","):
    print(section.upper(), flush=True)
    {"matmul": matmul, "decode": decode}[section]()


if __name__ == "__main__":
  main()
