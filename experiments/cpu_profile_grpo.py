"""The GRPO sections of `cpu_profile`: log-probs, the shared prompt pass, the
rollout's KV cache dtype, the benchmark's step, and the compiler options.

Each is described in `cpu_profile`'s docstring, which lists every section.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from experiments import bench_setup as bs
from experiments import profile_tools as tools
from rlcs_jax.model.config import PRESETS, ModelConfig
from rlcs_jax.sampler import sampling


def logprobs(reps: int = 5) -> None:
  from rlcs_jax.grpo import logprobs as lp  # pylint: disable=g-import-not-at-top

  logits = 3 * jax.random.normal(jax.random.key(0), (16, 128, 49152))
  targets = jax.random.randint(jax.random.key(1), (16, 128), 0, 49152)
  weights = jax.random.normal(jax.random.key(2), (16, 128))

  def plain(x):  # The implementation `_exp_sums` replaced (9a8273f^).
    z = x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    lse = jax.nn.logsumexp(z, axis=-1)
    probs = jnp.exp(z - lse[..., None])
    finite_z = jnp.where(z > -jnp.inf, z, 0.0)
    entropy = lse - jnp.sum(probs * finite_z, axis=-1)
    target = jnp.take_along_axis(z, targets[..., None], axis=-1)[..., 0]
    return target - lse, entropy

  ours = lambda x: lp.token_logprobs_and_entropy(x, targets)
  runs = {}
  for name, fn in (("jnp reductions", plain), ("_exp_sums", ours)):

    def loss(x, fn=fn):
      logp, entropy = fn(x)
      return jnp.sum(logp * weights) + jnp.mean(entropy)

    forward = jax.jit(lambda x, fn=fn: fn(x)[0])
    runs["forward", name] = lambda f=forward: f(logits)
    backward = jax.jit(jax.grad(loss))
    runs["forward + backward", name] = lambda f=backward: f(logits)
  for (what, name), secs in sorted(
      tools.interleaved_median_s(runs, reps).items()
  ):
    print(f"  {what:18s} {name:15s} {1e3 * secs:6.0f} ms")


def prompt_share(reps: int = 5, groups: int = 4, group_size: int = 4) -> None:
  from rlcs_jax.trainers import grpo_update  # pylint: disable=g-import-not-at-top

  cfg = dataclasses.replace(
      ModelConfig(**PRESETS["smollm2_135m"]), dtype="bfloat16"
  )
  params = tools.random_params(cfg)
  rng = np.random.default_rng(0)
  b, t = groups * group_size, 128
  for prompt in (16, 128):
    # Left-padded prompts of several lengths, one per group; completions of
    # several lengths.
    tokens = rng.integers(3, cfg.vocab_size, (b, prompt + t)).astype(np.int32)
    valid = np.ones((b, prompt + t), bool)
    for g in range(groups):
      rows = slice(g * group_size, (g + 1) * group_size)
      tokens[rows, :prompt] = tokens[g * group_size, :prompt]
      valid[rows, : int(rng.integers(0, prompt // 4 + 1))] = False
    valid[:, prompt:] = np.arange(t) < rng.integers(t // 2, t + 1, (b, 1))
    mask = valid[:, prompt:]
    runs = {}
    for name, r in (("per row", 1), ("shared prompt", group_size)):

      def logp(p, r=r):
        return grpo_update.completion_logprobs(
            p, cfg, tokens, valid, prompt, 1.0, r
        )[0]

      forward = jax.jit(logp)
      grad = jax.jit(
          jax.grad(lambda p, logp=logp: jnp.sum(jnp.where(mask, logp(p), 0)))
      )
      runs["forward", name] = lambda f=forward: f(params)
      runs["forward + backward", name] = lambda f=grad: f(params)
    saved = (1 - 1 / group_size) * prompt / (prompt + t - 1)
    print(f"  prompt {prompt}: {100 * saved:.0f}% fewer tokens shared")
    for (what, name), secs in sorted(
        tools.interleaved_median_s(runs, reps).items()
    ):
      print(f"    {what:18s} {name:13s} {1e3 * secs:6.0f} ms")


def rollout(
    batch: int = 16, prompt: int = 16, new: int = 128, reps: int = 3
) -> None:
  """A GRPO rollout's generation in bf16 with each KV cache dtype."""
  base = dataclasses.replace(
      ModelConfig(**PRESETS["smollm2_135m"]), dtype="bfloat16"
  )
  params = tools.random_params(base)
  tokens, valid = tools.random_prompts(base, batch, prompt)
  scfg = sampling.SamplingConfig(
      max_new_tokens=new, stop_ids=(), prompt_buckets=(prompt,)
  )
  runs = {}
  for cache in ("float32", "bfloat16"):
    cfg = dataclasses.replace(base, cache_dtype=cache)
    runs[cache] = lambda cfg=cfg: sampling.generate_arrays(
        params, tokens, valid, jax.random.key(0), model_cfg=cfg, cfg=scfg
    )
  for cache, secs in tools.interleaved_median_s(runs, reps).items():
    print(
        f"  B={batch}, prompt {prompt} + {new} sampled, bf16 compute,"
        f" {cache} cache: {1e3 * secs / new:.1f} ms per token (prefill"
        " included)"
    )


def grpo_step(dtype: str = "bfloat16") -> None:
  """The benchmark's GRPO step: phase times and op-time shares."""
  with _grpo_trainer(dtype) as (trainer, it):
    for i in range(3):  # The first step compiles.
      start = time.perf_counter()
      roll = trainer.rollout(it, i)
      rollout_s = time.perf_counter() - start
      _, timings = trainer.train_step(roll)
    print(
        f"  {dtype}, warm step: rollout {rollout_s:.2f} s, reference"
        f" {timings['time/reference']:.2f} s, update"
        f" {timings['time/update']:.2f} s"
    )
    tools.op_time_breakdown(lambda: trainer.rollout(it, 3), "rollout", top=8)
    tools.op_time_breakdown(
        lambda: trainer.train_step(roll), "reference + update", top=12
    )


def compiler_options(reps: int = 5) -> None:
  """Library steps compiled with and without `compiler.COMPILER_OPTIONS`."""
  from experiments import bench_jax  # pylint: disable=g-import-not-at-top
  from rlcs_jax import compiler  # pylint: disable=g-import-not-at-top

  variants = {
      "with": None,  # The library's jit already carries them.
      "without": {k: False for k in compiler.COMPILER_OPTIONS},
  }

  def compare(what: str, jitted, make_args, chain: bool) -> None:
    """`jitted` compiled per variant; with `chain`, its first output replaces
    its first (donated) argument, as a training loop does."""
    args = {v: make_args() for v in variants}
    fns = {
        v: jitted.lower(*args[v]).compile(compiler_options=opts)
        for v, opts in variants.items()
    }
    times = collections.defaultdict(list)
    for rep in range(reps + 1):  # The first round warms up.
      for v, fn in fns.items():
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args[v]))
        if rep:
          times[v].append(time.perf_counter() - start)
        if chain:
          args[v][0] = out[0]
    line = ", ".join(f"{v} {np.median(t):.3f} s" for v, t in times.items())
    print(f"  {what}: {line} (median of {reps}, alternately)", flush=True)

  for dtype in ("float32", "bfloat16"):
    cfg = dataclasses.replace(
        ModelConfig(**PRESETS["smollm2_135m"]), dtype=dtype
    )
    params = tools.random_params(cfg)
    tx, step = bench_jax._train_step_fn(cfg)  # pylint: disable=protected-access
    batch = bench_jax.train_batch(cfg, 8, 256)
    compare(
        f"SFT step B=8 L=256, {dtype}",
        step,
        lambda p=params: [bench_jax.train_state(p, tx), batch],
        chain=True,
    )
    del params
    with _grpo_trainer(dtype) as (trainer, it):
      roll = trainer.rollout(it, 0)
      group = trainer._prompt_group_size(roll)  # pylint: disable=protected-access
      tokens, valid = jnp.asarray(roll.tokens), jnp.asarray(roll.valid)
      batch = {
          "tokens": tokens,
          "valid": valid,
          "mask": jnp.asarray(roll.mask, jnp.float32),
          "adv": jnp.asarray(np.linspace(-1, 1, len(roll.tokens)), jnp.float32),
          "seq_weight": jnp.ones(len(roll.tokens), jnp.float32),
          "ref_logp": jnp.zeros(roll.mask.shape, jnp.float32),
      }
      compare(
          f"GRPO reference pass, {dtype}",
          trainer._logp_fn(roll.prompt_len, group),  # pylint: disable=protected-access
          lambda: [trainer.ref_params, tokens, valid],
          chain=False,
      )
      compare(
          f"GRPO update, {dtype}",
          trainer._update_fn(roll.prompt_len, group),  # pylint: disable=protected-access
          lambda: [jax.tree.map(jnp.copy, trainer.state), batch],
          chain=True,
      )


@contextlib.contextmanager
def _grpo_trainer(dtype: str):
  """(trainer, prompt iterator) of the benchmark's GRPO step on SmolLM2,
  inside its mesh and sharding rules."""
  from experiments import bench_jax  # pylint: disable=g-import-not-at-top

  st = bs.settings(False)
  reward = lambda b: np.asarray([bs.code_reward(c) for c in b.completions])
  with tempfile.TemporaryDirectory() as workdir:
    trainer, mesh, rules, it = bench_jax.grpo_trainer(
        "smollm2", st, dtype, reward, workdir
    )
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      yield trainer, it
