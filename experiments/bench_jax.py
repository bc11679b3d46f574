"""Our side of the benchmark: rlcs_jax decode, SFT step, GRPO step, scaling.

Each `run_*` function measures one section for one model in the calling
process and returns a JSON-able dict. Timings follow `bench_setup.timed`:
one first call (compile + run, reported as compile time), then several
repetitions whose median is reported; every repetition ends with
`block_until_ready` (or a host transfer), so no work is left in flight.

Shape legend: B batch, P prompt length, T new tokens, L sequence length,
V vocab, Pg prompts per GRPO step, R samples per prompt.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import bench_setup as bs
from rlcs_jax.grpo import advantages as adv_lib
from rlcs_jax.grpo import logprobs as logprobs_lib
from rlcs_jax.grpo import losses
from rlcs_jax.model import weights
from rlcs_jax.model.config import PRESETS, ModelConfig, dtype_of
from rlcs_jax.model.transformer import Transformer, output_logits
from rlcs_jax.sampler import sampling
from rlcs_jax.trainers import sft
from rlcs_jax.trainers import state as state_lib


class _LetterTokenizer:
  """Stand-in tokenizer for the tiny model (which has none): ids -> letters.

  Only used so the GRPO reward can run on text for the tiny model.
  """

  def __init__(self, vocab_size: int):
    self.vocab_size = vocab_size

  def encode(self, text: str) -> list[int]:
    return [3 + b % (self.vocab_size - 3) for b in text.encode()]

  def decode(self, ids) -> str:
    return "".join(" " if i % 7 == 0 else chr(97 + i % 26) for i in ids)


def load_model(name: str) -> tuple[ModelConfig, Any, Any]:
  """(config, float32 params, tokenizer) of a benchmark model."""
  if name == "tiny":
    cfg = ModelConfig(**PRESETS["tiny"])
    variables = Transformer(cfg).init(jax.random.key(bs.TINY_SEED),
                                      jnp.zeros((1, 8), jnp.int32))
    return cfg, nn.meta.unbox(variables)["params"], _LetterTokenizer(
        cfg.vocab_size)
  if name == "smollm2":
    from rlcs_jax.model import smollm2  # Reads the GGUF from the cache.
    return smollm2.load_smollm2()
  raise ValueError(f"unknown benchmark model {name!r}")


def export(name: str, out_dir: str) -> dict:
  """Writes the model's weights as a Hugging Face checkpoint."""
  cfg, params, _ = load_model(name)
  weights.save_hf_checkpoint(params, cfg, out_dir)
  return {"dir": out_dir, "num_params": cfg.num_params(),
          "peak_rss_mb": bs.peak_rss_mb()}


def matmul_flops(size: int, dtype: str, reps: int) -> float:
  """FLOP/s of one dense [n, n] @ [n, n] on the model's matmul dtype path.

  The path is the one `transformer._dot` takes: inputs in the compute dtype,
  float32 accumulation.
  """
  dt = dtype_of(dtype)
  keys = jax.random.split(jax.random.key(0))
  a = jax.random.normal(keys[0], (size, size), jnp.float32).astype(dt)
  b = jax.random.normal(keys[1], (size, size), jnp.float32).astype(dt)
  mm = jax.jit(lambda a, b: jnp.einsum(
      "mk,kn->mn", a, b, preferred_element_type=jnp.float32))
  t = bs.timed(lambda: mm(a, b).block_until_ready(), max(reps, 5), warmup=2)
  return 2.0 * size**3 / t["median_s"]


# ----------------------------------------------------------------------------
# Decode.


def _generate_fn(params, cfg: ModelConfig, batch: int, prompt: int,
                 new: int):
  tokens = jnp.asarray(bs.prompt_tokens(cfg.vocab_size, batch, prompt),
                       jnp.int32)
  valid = jnp.ones(tokens.shape, bool)
  scfg = sampling.SamplingConfig(max_new_tokens=new, greedy=True,
                                 stop_ids=(), prompt_buckets=(prompt,))

  def generate():
    # A fresh key per call: the decode loop donates its state, key included.
    return jax.block_until_ready(sampling.generate_arrays(
        params, tokens, valid, jax.random.key(0), model_cfg=cfg, cfg=scfg))

  def prefill():
    return jax.block_until_ready(sampling.prefill(
        params, tokens, valid, model_cfg=cfg, cache_len=prompt + new))

  return generate, prefill


def run_decode(name: str, st: bs.Settings) -> dict:
  """Greedy decode, prompt P + T new tokens, at each batch size."""
  cfg, params, _ = load_model(name)
  out = {}
  for b in st.decode_batches:
    generate, prefill = _generate_fn(params, cfg, b, st.decode_prompt,
                                     st.decode_new)
    gen = bs.timed(generate, st.reps)
    pre = bs.timed(prefill, st.reps)
    tokens = np.asarray(generate()[0])
    total = gen["median_s"]
    out[str(b)] = {
        "tokens_per_s": b * st.decode_new / total,
        "total_s": total,
        "prefill_s": pre["median_s"],
        "decode_tokens_per_s": b * st.decode_new / max(
            total - pre["median_s"], 1e-9),
        "compile_s": max(gen["first_s"] - total, 0.0),
        "first_row_tokens": tokens[0].tolist(),
    }
  out["peak_rss_mb"] = bs.peak_rss_mb()
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
  out["max_over_min"] = max(per_token) / min(per_token)
  out["batch"] = b
  out["peak_rss_mb"] = bs.peak_rss_mb()
  return out


# ----------------------------------------------------------------------------
# SFT train step.


def _optimizer(lr: float, weight_decay: float):
  return state_lib.make_optimizer(state_lib.OptimConfig(
      lr=lr, warmup_steps=0, total_steps=10**6, min_lr_ratio=1.0,
      weight_decay=weight_decay, b1=0.9, b2=0.999, eps=1e-8, clip_norm=1.0))


def _train_step_time(cfg: ModelConfig, params, batch: int, seq: int,
                     reps: int) -> dict:
  tx = _optimizer(1e-4, 0.01)
  state = state_lib.TrainState(step=jnp.zeros((), jnp.int32),
                               params=jax.tree.map(jnp.copy, params),
                               opt_state=tx.init(params))
  step = jax.jit(sft.make_train_step(cfg, tx, grad_accum=1),
                 donate_argnums=0)
  tokens = jnp.asarray(bs.train_tokens(cfg.vocab_size, batch, seq), jnp.int32)
  data = {"tokens": tokens, "valid": jnp.ones(tokens.shape, bool),
          "loss_mask": jnp.ones(tokens.shape, jnp.float32)}
  holder = [state]

  def run():
    holder[0], metrics = step(holder[0], data)
    return float(metrics["loss"])  # Host transfer: waits for the step.

  t = bs.timed(run, reps)
  flops = cfg.flops_per_token(seq) * batch * seq
  return {"step_s": t["median_s"], "tokens_per_s": batch * seq / t["median_s"],
          "model_flops_per_s": flops / t["median_s"],
          "compile_s": max(t["first_s"] - t["median_s"], 0.0)}


def run_train(name: str, st: bs.Settings) -> dict:
  """SFT forward + backward + AdamW at B x L, with MFU vs a dense matmul."""
  cfg, params, _ = load_model(name)
  mm = matmul_flops(st.matmul_size, cfg.dtype, st.reps)
  out = _train_step_time(cfg, params, st.train_batch, st.train_seq, st.reps)
  out["matmul_flops_per_s"] = mm
  out["mfu_vs_matmul"] = out["model_flops_per_s"] / mm
  out["peak_rss_mb"] = bs.peak_rss_mb()
  return out


def run_scaling_train(name: str, st: bs.Settings) -> dict:
  cfg, params, _ = load_model(name)
  reps = st.reps if name == "tiny" else max(2, st.reps // 2)
  out = {str(L): _train_step_time(cfg, params, st.train_batch, L, reps)
         for L in st.scaling_seqs}
  out["peak_rss_mb"] = bs.peak_rss_mb()
  return out


# ----------------------------------------------------------------------------
# GRPO step: generate -> reference log-probs -> reward -> update.


def _completion_logprobs(params, cfg: ModelConfig, seq_BL, valid_BL,
                         prompt_len: int):
  """log p(completion tokens) under `params`; seq = prompt (P) + completion.

  Only the completion positions go through the output head.
  """
  hidden, _ = Transformer(cfg).apply({"params": params}, seq_BL[:, :-1],
                                     valid_BL=valid_BL[:, :-1],
                                     return_hidden=True)
  logits = output_logits(params, cfg, hidden[:, prompt_len - 1:])
  return logprobs_lib.token_logprobs(logits, seq_BL[:, prompt_len:])


def compose_grpo_step(cfg: ModelConfig, tx, loss_cfg: losses.LossConfig,
                      prompt_len: int):
  """Jitted (reference, update) functions of one GRPO step."""

  @jax.jit
  def reference(ref_params, seq_BL, valid_BL):
    return _completion_logprobs(ref_params, cfg, seq_BL, valid_BL, prompt_len)

  @functools.partial(jax.jit, donate_argnums=0)
  def update(state, seq_BL, valid_BL, old_logp_BT, ref_logp_BT, rewards_PR):
    adv_PR, _ = adv_lib.group_advantages(rewards_PR)
    mask_BT = valid_BL[:, prompt_len:]

    def loss_fn(p):
      logp = _completion_logprobs(p, cfg, seq_BL, valid_BL, prompt_len)
      (s, c), metrics = losses.grpo_loss(logp, old_logp_BT, adv_PR.reshape(-1),
                                         mask_BT, loss_cfg,
                                         ref_logp_BL=ref_logp_BT)
      return s / jnp.maximum(c, 1), metrics

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(step=state.step + 1, params=params,
                         opt_state=opt_state), loss

  return reference, update


def run_grpo(name: str, st: bs.Settings) -> dict:
  """One GRPO step (Pg prompts x R samples x T tokens), time split by phase.

  Composed from the sampler, `grpo.advantages`, `grpo.losses.grpo_loss` and
  the trainer's optimizer (see the module docstring of `bench.py` for why).
  Settings match TRL's defaults where TRL's are the reference: token-mean
  ("dapo") aggregation, k3 KL, eps 0.2, AdamW lr 1e-6, clip 1.0.
  """
  cfg, params, tokenizer = load_model(name)
  pg, r, t = st.grpo_prompts, st.grpo_samples, st.grpo_new
  prompts = [tokenizer.encode(p) for p in bs.GRPO_PROMPTS[:pg]]
  scfg = sampling.SamplingConfig(max_new_tokens=t, temperature=1.0,
                                 stop_ids=(), pad_id=0)
  plen = sampling.bucket_length(max(map(len, prompts)), scfg.prompt_buckets)
  ptoks, pvalid = sampling.pad_prompts([p for p in prompts for _ in range(r)],
                                       plen, scfg.pad_id, scfg.padding)
  ptoks, pvalid = jnp.asarray(ptoks), jnp.asarray(pvalid)
  loss_cfg = losses.LossConfig(beta=st.grpo_beta, kl_estimator="k3",
                               aggregation="token_mean")
  tx = _optimizer(1e-6, 0.0)
  reference, update = compose_grpo_step(cfg, tx, loss_cfg, plen)
  ref_params = jax.tree.map(jnp.copy, params)
  holder = [state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                 opt_state=tx.init(params))]
  splits: dict[str, list[float]] = {
      k: [] for k in ("generate", "reference", "reward", "update", "step")}

  def step(i):
    t0 = time.perf_counter()
    tokens, logp, _, _ = sampling.generate_arrays(
        holder[0].params, ptoks, pvalid, jax.random.key(i), model_cfg=cfg,
        cfg=scfg)
    seq = jnp.concatenate([ptoks, tokens], axis=1)
    valid = jnp.concatenate([pvalid, jnp.ones(tokens.shape, bool)], axis=1)
    host_tokens = np.asarray(tokens)  # The reward needs them on the host.
    t1 = time.perf_counter()
    ref_logp = reference(ref_params, seq, valid).block_until_ready()
    t2 = time.perf_counter()
    rewards = np.asarray([bs.code_reward(tokenizer.decode(row))
                          for row in host_tokens], np.float32).reshape(pg, r)
    t3 = time.perf_counter()
    holder[0], loss = update(holder[0], seq, valid, logp, ref_logp,
                             jnp.asarray(rewards))
    float(loss)
    t4 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0

  first = step(0)[-1]
  for i in range(st.reps):
    for k, v in zip(splits, step(i + 1)):
      splits[k].append(v)
  out = {f"{k}_s": bs.median(v) for k, v in splits.items()}
  out["compile_s"] = max(first - out["step_s"], 0.0)
  out["implementation"] = "composed: sampler + grpo_loss + optimizer"
  out["peak_rss_mb"] = bs.peak_rss_mb()
  return out


JOBS = {
    "export": export,
    "decode": run_decode,
    "train": run_train,
    "grpo": run_grpo,
    "scaling_decode": run_scaling_decode,
    "scaling_train": run_scaling_train,
}
