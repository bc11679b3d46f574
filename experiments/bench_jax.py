"""Our side of the benchmark: rlcs_jax decode, SFT step, GRPO step, scaling.

Each `run_*` function measures one section for one model in the calling
process and returns a JSON-able dict. Timings follow `bench_setup.timed`:
one first call (compile + run, reported as compile time), then several
repetitions whose median is reported; every repetition ends with
`block_until_ready` (or a host transfer), so no work is left in flight.

The decode and GRPO jobs also measure the two machine rates of their
roofline (`roofline`: dense matmul FLOP/s on the job's dtype path, float32
for decode, and streaming-read bytes/s over an array as large as the
model's weights in that dtype), in the same process.

Shape legend: B batch, P prompt length, T new tokens, L sequence length,
V vocab, Pg prompts per GRPO step, R samples per prompt.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import zlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from experiments import bench_setup as bs
from rlcs_jax import compiler
from rlcs_jax import memory_plan
from rlcs_jax.model import hf_checkpoint
from rlcs_jax.model.config import PRESETS, ModelConfig, dtype_of
from rlcs_jax.model.transformer import Transformer
from rlcs_jax.sampler import sampling
from rlcs_jax.trainers import sft
from rlcs_jax.trainers import state as state_lib


class _WordTokenizer:
  """Stand-in tokenizer for the random models (which have none).

  One id per whitespace-separated word (hashed), so the GRPO reward can run
  on text; decoding gives one pseudo-word per id.
  """

  def __init__(self, vocab_size: int):
    self.vocab_size = vocab_size
    self.pad_id, self.eos_id, self.bos_id, self.unk_id = 0, 1, None, None

  def encode(self, text: str) -> list[int]:
    return [
        3 + zlib.crc32(w.encode()) % (self.vocab_size - 3) for w in text.split()
    ]

  def decode(self, ids) -> str:
    return " ".join(f"w{int(i)}" for i in ids)


def load_model(
    name: str, dtype: str = "float32"
) -> tuple[ModelConfig, Any, Any]:
  """(config, float32 params, tokenizer) of a benchmark model.

  `dtype` is the compute dtype (matmul inputs; float32 accumulation and
  float32 parameters either way).
  """
  cfg, params, tokenizer = _load_float32(name)
  return dataclasses.replace(cfg, dtype=dtype), params, tokenizer


@functools.cache
def _init_fn(cfg: ModelConfig):
  # Jitted once per config: run eagerly, init compiles every op of a forward
  # pass apart, and every section loads its model afresh.
  return jax.jit(Transformer(cfg).init)


def _load_float32(name: str) -> tuple[ModelConfig, Any, Any]:
  if name in ("tiny", "test"):
    cfg = ModelConfig(**PRESETS[name])
    variables = _init_fn(cfg)(
        jax.random.key(bs.TINY_SEED), jnp.zeros((1, 8), jnp.int32)
    )
    return (
        cfg,
        nn.meta.unbox(variables)["params"],
        _WordTokenizer(cfg.vocab_size),
    )
  if name == "smollm2":
    from rlcs_jax.model import smollm2  # Reads the GGUF from the cache.

    return smollm2.load_smollm2()
  raise ValueError(f"unknown benchmark model {name!r}")


def export(name: str, out_dir: str) -> dict:
  """Writes the model's weights as a Hugging Face checkpoint."""
  cfg, params, _ = load_model(name)
  hf_checkpoint.save_hf_checkpoint(params, cfg, out_dir)
  return {
      "dir": out_dir,
      "num_params": cfg.num_params(),
      "peak_rss_mb": bs.peak_rss_mb(),
  }


def matmul_flops(size: int, dtype: str, reps: int) -> float:
  """FLOP/s of one dense [n, n] @ [n, n] on the model's matmul dtype path.

  The path is the one `matmul.dot` takes: inputs in the compute dtype,
  float32 accumulation.
  """
  dt = dtype_of(dtype)
  keys = jax.random.split(jax.random.key(0))
  a = jax.random.normal(keys[0], (size, size), jnp.float32).astype(dt)
  b = jax.random.normal(keys[1], (size, size), jnp.float32).astype(dt)
  mm = jax.jit(
      lambda a, b: jnp.einsum(
          "mk,kn->mn", a, b, preferred_element_type=jnp.float32
      )
  )
  t = bs.timed(lambda: mm(a, b).block_until_ready(), max(reps, 5), warmup=2)
  return 2.0 * size**3 / t["median_s"]


# Each timed read call streams at least this many bytes (looping over a
# small array), so the ~10-50 us dispatch of one jitted call does not
# dominate the time of a small model's weights.
_READ_BYTES_PER_CALL = 2**27


def read_bytes_per_s(num_bytes: int, reps: int) -> dict[str, float]:
  """Streaming-read rates (bytes/s) of XLA over a float32 array this large.

  The array has as many bytes as the weights it stands for, so it lives in
  the same cache level (or main memory) as they do. Two read patterns, each
  a jitted loop that rereads the array: a column sum and a vector-matrix
  product (one decode step's access pattern). The loop carry enters every
  read, so XLA cannot hoist the read out of the loop.
  """
  rows = max(-(-num_bytes // (4 * 1024)), 1)
  a = jnp.ones((rows, 1024), jnp.float32)
  x = jnp.ones((1, rows), jnp.float32)
  loops = max(-(-_READ_BYTES_PER_CALL // a.nbytes), 1)

  def column_sum(a):
    return jax.lax.fori_loop(
        0,
        loops,
        lambda i, c: c + jnp.sum(a + c[0], axis=0),
        jnp.zeros((1024,), jnp.float32),
    )

  def vector_matrix(x, a):
    return jax.lax.fori_loop(
        0,
        loops,
        lambda i, c: c + (x + c[0, 0]) @ a,
        jnp.zeros((1, 1024), jnp.float32),
    )

  calls = {
      "column_sum": functools.partial(jax.jit(column_sum), a),
      "vector_matrix": functools.partial(jax.jit(vector_matrix), x, a),
  }
  rates = {}
  for name, f in calls.items():
    t = bs.timed(lambda f=f: f().block_until_ready(), max(reps, 5), warmup=2)
    rates[name] = loops * a.nbytes / t["median_s"]
  return rates


def roofline(
    cfg: ModelConfig,
    st: bs.Settings,
    dtype: str = "float32",
    flops_per_s: float = 0.0,
) -> dict:
  """The two machine rates and the model sizes of a roofline in `dtype`.

  The matmul rate on `dtype`'s path (the faster of this measurement and
  `flops_per_s`, an earlier one), and the read rate over the weights as
  stored in `dtype` (decode and GRPO's rollout multiply by matrices in the
  compute dtype, `sampling.compute_params`); the weights' bytes in `dtype`
  and one cached token's in the model's cache dtype. Measured rates, not a
  profile of our code: `bench_roofline` turns them into the least time any
  implementation could take.
  """
  n = cfg.matmul_params()
  weight_bytes = jnp.dtype(dtype_of(dtype)).itemsize * n
  reads = read_bytes_per_s(weight_bytes, st.reps)
  return {
      "matmul_flops_per_s": max(
          flops_per_s, matmul_flops(st.matmul_size, dtype, st.reps)
      ),
      "read_bytes_per_s": max(reads.values()),
      "read_bytes_per_s_by_pattern": reads,
      "matmul_params": n,
      # Output head (vocab x model); a prefill needs it at one position.
      "head_params": cfg.vocab_size * cfg.d_model,
      "weight_bytes": weight_bytes,
      # One token's keys and values over all layers in the model's cache
      # dtype: its compute dtype, as HF's float32 decode and (from reading
      # trl 1.16.0 and accelerate) TRL's `bf16=True` rollouts cache too.
      "kv_bytes_per_slot": memory_plan.kv_cache_bytes(cfg, 1, 1, 1),
  }


# ----------------------------------------------------------------------------
# Decode.


def _generate_fn(params, cfg: ModelConfig, batch: int, prompt: int, new: int):
  tokens = jnp.asarray(
      bs.prompt_tokens(cfg.vocab_size, batch, prompt), jnp.int32
  )
  valid = jnp.ones(tokens.shape, bool)
  scfg = sampling.SamplingConfig(
      max_new_tokens=new, greedy=True, stop_ids=(), prompt_buckets=(prompt,)
  )

  def generate():
    return jax.block_until_ready(
        sampling.generate_arrays(
            params, tokens, valid, jax.random.key(0), model_cfg=cfg, cfg=scfg
        )
    )

  def prefill():
    return jax.block_until_ready(
        sampling.prefill(params, tokens, valid, model_cfg=cfg)
    )

  return generate, prefill


def run_decode(name: str, st: bs.Settings) -> dict:
  """Greedy decode, prompt P + T new tokens, at each batch size.

  Also measures this machine's float32 matmul and weight-sized read rates
  (`roofline`), from which `bench.py` bounds the decode time.
  """
  cfg, params, _ = load_model(name)
  out = {}
  for b in st.decode_batches:
    generate, prefill = _generate_fn(
        params, cfg, b, st.decode_prompt, st.decode_new
    )
    gen = bs.timed(generate, st.reps)
    pre = bs.timed(prefill, st.reps)
    tokens = np.asarray(generate()[0])
    total = gen["median_s"]
    out[str(b)] = {
        "tokens_per_s": b * st.decode_new / total,
        "total_s": total,
        "prefill_s": pre["median_s"],
        "decode_tokens_per_s": b
        * st.decode_new
        / max(total - pre["median_s"], 1e-9),
        "compile_s": max(gen["first_s"] - total, 0.0),
        "first_row_tokens": tokens[0].tolist(),
    }
  # Before the roofline: its read array is as large as the weights.
  out["peak_rss_mb"] = bs.peak_rss_mb()
  out["roofline"] = roofline(cfg, st)
  return out


def run_scaling_decode(name: str, st: bs.Settings) -> dict:
  """Decode time per new token at several generation lengths."""
  cfg, params, _ = load_model(name)
  b = st.scaling_decode_batch
  out = {}
  for t in st.scaling_new:
    generate, prefill = _generate_fn(params, cfg, b, st.decode_prompt, t)
    gen = bs.timed(generate, st.reps)
    pre = bs.timed(prefill, st.reps)
    out[str(t)] = {
        "ms_per_token": 1e3 * (gen["median_s"] - pre["median_s"]) / t,
        "compile_s": max(gen["first_s"] - gen["median_s"], 0.0),
    }
  per_token = [out[str(t)]["ms_per_token"] for t in st.scaling_new]
  out["max_over_min"] = (
      max(per_token) / min(per_token) if min(per_token) > 0 else float("nan")
  )
  out["batch"] = b
  out["peak_rss_mb"] = bs.peak_rss_mb()
  return out


# ----------------------------------------------------------------------------
# SFT train step.


def _optimizer(lr: float, weight_decay: float):
  return state_lib.make_optimizer(
      state_lib.OptimConfig(
          lr=lr,
          warmup_steps=0,
          total_steps=10**6,
          min_lr_ratio=1.0,
          weight_decay=weight_decay,
          b1=0.9,
          b2=0.999,
          eps=1e-8,
          clip_norm=1.0,
      )
  )


@functools.lru_cache(maxsize=None)
def _train_step_fn(cfg: ModelConfig):
  """(optimizer, jitted SFT step); cached so equal shapes reuse compiles."""
  tx = _optimizer(1e-4, 0.01)
  return tx, compiler.jit(
      sft.make_train_step(cfg, tx, grad_accum=1), donate_argnums=0
  )


def train_state(params, tx) -> state_lib.TrainState:
  """A fresh train state on a copy of `params` (the step donates it)."""
  return state_lib.TrainState(
      step=jnp.zeros((), jnp.int32),
      params=jax.tree.map(jnp.copy, params),
      opt_state=tx.init(params),
  )


def train_batch(cfg: ModelConfig, batch: int, seq: int) -> dict:
  """The benchmark's SFT batch: B x L tokens, every position trained."""
  tokens = jnp.asarray(bs.train_tokens(cfg.vocab_size, batch, seq), jnp.int32)
  return {
      "tokens": tokens,
      "valid": jnp.ones(tokens.shape, bool),
      "loss_mask": jnp.ones(tokens.shape, jnp.float32),
  }


def train_step_runner(cfg: ModelConfig, params, batch: int, seq: int):
  """A no-argument function running one SFT step on random B x L tokens."""
  tx, step = _train_step_fn(cfg)
  state, data = train_state(params, tx), train_batch(cfg, batch, seq)
  holder = [state]

  def run():
    holder[0], metrics = step(holder[0], data)
    return float(metrics["loss"])  # Host transfer: waits for the step.

  return run


def _train_step_time(
    cfg: ModelConfig, params, batch: int, seq: int, reps: int
) -> dict:
  t = bs.timed(
      train_step_runner(cfg, params, batch, seq), reps, bs.TRAIN_WARMUP
  )
  flops = cfg.flops_per_token(seq) * batch * seq
  return {
      "step_s": t["median_s"],
      "tokens_per_s": batch * seq / t["median_s"],
      "model_flops_per_s": flops / t["median_s"],
      "compile_s": max(t["first_s"] - t["median_s"], 0.0),
  }


def run_train(name: str, st: bs.Settings, dtype: str = "float32") -> dict:
  """SFT forward + backward + AdamW at B x L, with MFU vs a dense matmul."""
  cfg, params, _ = load_model(name, dtype)
  before = matmul_flops(st.matmul_size, cfg.dtype, st.reps)
  out = _train_step_time(cfg, params, st.train_batch, st.train_seq, st.reps)
  # The faster of two measurements (one matmul measured 754 GFLOP/s in one
  # bf16 worker and 1422 in another of the same run): a low reference
  # would flatter the MFU.
  mm = max(before, matmul_flops(st.matmul_size, cfg.dtype, st.reps))
  out["matmul_flops_per_s"] = mm
  out["mfu_vs_matmul"] = out["model_flops_per_s"] / mm
  out["peak_rss_mb"] = bs.peak_rss_mb()
  return out


def run_scaling_train(name: str, st: bs.Settings, seq: int) -> dict:
  """The SFT step at sequence length `seq` (one worker per length: a process
  keeps its peak heap, host_memory.py, and three lengths' steps in one
  process outgrew this machine's 23.6 GiB)."""
  cfg, params, _ = load_model(name)
  reps = st.reps if name != "smollm2" else max(2, st.reps // 2)
  out = _train_step_time(cfg, params, st.train_batch, seq, reps)
  out["peak_rss_mb"] = bs.peak_rss_mb()
  return out


# ----------------------------------------------------------------------------
# GRPO step: the real trainer (`trainers/grpo.py`), one step at a time.


class _NoStopTokenizer:
  """A tokenizer whose prompts are used raw and whose generations never stop.

  The benchmark compares fixed-length rollouts (T tokens every time, like
  TRL with `min_new_tokens=T`) on plain-text prompts.
  """

  def __init__(self, base):
    self._base = base
    self.vocab_size = base.vocab_size
    self.pad_id = getattr(base, "pad_id", 0)
    self.eos_id = getattr(base, "eos_id", 0)
    self.bos_id = getattr(base, "bos_id", None)
    self.unk_id = getattr(base, "unk_id", None)
    self.stop_ids = ()

  def encode(self, text: str) -> list[int]:
    return self._base.encode(text)

  def decode(self, ids) -> str:
    return self._base.decode(ids)

  def format_prompt(self, user_text: str) -> str:
    return user_text

  def encode_prompt(self, user_text: str) -> list[int]:
    prefix = [] if self.bos_id is None else [self.bos_id]
    return prefix + self.encode(user_text)


def _grpo_config(st: bs.Settings):
  """The GRPO trainer's config with the benchmark's settings (TRL-aligned:
  token-mean ("dapo") aggregation, k3 KL, eps 0.2, lr 1e-6, one update)."""
  from configs import grpo_tiny  # pylint: disable=g-import-not-at-top

  config = grpo_tiny.get_config()
  config.unlock()
  g = config.grpo
  g.num_prompts, g.num_generations = st.grpo_prompts, st.grpo_samples
  g.max_new_tokens, g.temperature, g.beta = st.grpo_new, 1.0, st.grpo_beta
  g.num_iterations, g.micro_batch, g.dynamic_sampling = 1, 0, False
  g.kl_estimator, g.aggregation = "k3", "token_mean"
  g.clip_eps_low = g.clip_eps_high = 0.2
  g.scale_by_std, g.overlong = True, "none"
  g.lr, g.warmup_steps = 1e-6, 0
  config.sampler.top_k, config.sampler.top_p = 0, 1.0
  config.sampler.prompt_buckets = (16, 32, 64, 128, 256)
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = -1, 1, 1
  config.optim.weight_decay = 0.0
  config.lock()
  return config


def grpo_trainer(name: str, st: bs.Settings, dtype: str, reward_fn, workdir):
  """(trainer, mesh, rules, prompt iterator): the real GRPO trainer on a
  benchmark model with the benchmark's settings and `reward_fn`."""
  from rlcs_jax.trainers import grpo  # pylint: disable=g-import-not-at-top
  from rlcs_jax.trainers import rewards as rewards_lib  # pylint: disable=g-import-not-at-top
  from rlcs_jax import sharding as shd  # pylint: disable=g-import-not-at-top

  cfg, params, tokenizer = load_model(name, dtype)
  config = _grpo_config(st)
  prompts = [{"prompt": p} for p in bs.GRPO_PROMPTS[: st.grpo_prompts]]

  def prompt_iter():
    while True:
      yield list(prompts)

  # One device: the benchmark process has one (tests force eight).
  mesh = shd.make_mesh(dict(config.mesh), devices=jax.devices()[:1])
  rules = tuple(tuple(r) for r in config.sharding_rules)
  # Built outside the mesh context and stepped inside it, as `grpo.train`.
  trainer = grpo.GRPOTrainer(
      config,
      workdir,
      stage="bench",
      model_cfg=cfg,
      tokenizer=_NoStopTokenizer(tokenizer),
      mesh=mesh,
      init_params=params,
      reward_components=[
          rewards_lib.RewardComponent("code_reward", reward_fn, 1.0)
      ],
  )
  return trainer, mesh, rules, prompt_iter()


def run_grpo(name: str, st: bs.Settings, dtype: str = "float32") -> dict:
  """One GRPO step of the real trainer, time split by phase.

  rollout = sampling + decoding + rewards (`GRPOTrainer.rollout`); the
  reward time is measured inside the reward function, so generate =
  rollout - reward. `train_step` reports its reference and update times;
  the rest of it (advantages, the old-policy log-prob pass, host -> device)
  is `other_s`. `roofline` holds the rates and sizes from which
  `bench_roofline.grpo_roofline` bounds the step.
  """
  import tempfile  # pylint: disable=g-import-not-at-top

  reward_time = [0.0]

  def reward_fn(batch) -> np.ndarray:
    start = time.perf_counter()
    out = np.asarray([bs.code_reward(c) for c in batch.completions])
    reward_time[0] += time.perf_counter() - start
    return out

  splits: dict[str, list[float]] = {
      k: []
      for k in ("generate", "reward", "reference", "update", "other", "step")
  }
  workdir = tempfile.TemporaryDirectory(prefix="rlcs_bench_grpo_")
  # The roofline's matmul rate: the faster of two measurements, before and
  # after the steps (as `run_train`'s), since a low rate would lower the
  # ceiling.
  flops_before = matmul_flops(st.matmul_size, dtype, st.reps)
  trainer, mesh, rules, it = grpo_trainer(
      name, st, dtype, reward_fn, workdir.name
  )
  prompt_tokens: list[int] = []  # Per row, without padding.
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):

    def step(i):
      reward_time[0] = 0.0
      t0 = time.perf_counter()
      roll = trainer.rollout(it, i)
      t1 = time.perf_counter()
      metrics, timings = trainer.train_step(roll)
      t2 = time.perf_counter()
      assert roll.tokens.shape[1] - roll.prompt_len == st.grpo_new
      prompt_tokens[:] = roll.valid[:, : roll.prompt_len].sum(1).tolist()
      ref, upd = timings.get("time/reference", 0.0), timings["time/update"]
      return {
          "generate": t1 - t0 - reward_time[0],
          "reward": reward_time[0],
          "reference": ref,
          "update": upd,
          "other": t2 - t1 - ref - upd,
          "step": t2 - t0,
      }, metrics

    first, _ = step(0)
    for i in range(st.reps):
      times, metrics = step(i + 1)
      for k, v in times.items():
        splits[k].append(v)
  workdir.cleanup()
  out = {f"{k}_s": bs.median(v) for k, v in splits.items()}
  out["compile_s"] = max(first["step"] - out["step_s"], 0.0)
  out["loss"] = float(metrics["loss"])
  out["implementation"] = "rlcs_jax.trainers.grpo.GRPOTrainer"
  out["peak_rss_mb"] = bs.peak_rss_mb()
  groups = np.reshape(prompt_tokens, (st.grpo_prompts, st.grpo_samples))
  assert (groups == groups[:, :1]).all(), groups  # A group shares a prompt.
  # After the peak RSS: the read array is as large as the weights.
  out["roofline"] = {
      **roofline(trainer.model_cfg, st, dtype, flops_before),
      # One count per group: a group's rows share their prompt.
      "prompt_tokens": groups[:, 0].tolist(),
      "group": st.grpo_samples,
      "new": st.grpo_new,
      "reference": st.grpo_beta > 0,
  }
  return out


JOBS = {
    "export": export,
    "decode": run_decode,
    "train": run_train,
    "grpo": run_grpo,
    "scaling_decode": run_scaling_decode,
    "scaling_train": run_scaling_train,
}
