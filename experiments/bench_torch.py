"""The baselines: Hugging Face `generate`, a PyTorch eager SFT step, TRL GRPO.

Benchmark-only: `torch`, `transformers`, `trl` come from the `bench` extra
and are imported inside the functions, never by the library. Models are
loaded from the checkpoints `bench_jax.export` wrote, so the weights are
exactly ours. torch uses as many threads as XLA's CPU client (all cores this
process may run on), in float32, eager mode, default attention (SDPA).
"""

from __future__ import annotations

import contextlib
import tempfile
import time

from experiments import bench_setup as bs


def _torch():
  import torch  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(bs.num_cores())
  torch.manual_seed(0)
  return torch


def _load(hf_dir: str):
  torch = _torch()
  from transformers import LlamaForCausalLM  # pylint: disable=g-import-not-at-top

  model = LlamaForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
  return torch, model


def matmul_flops(size: int, reps: int, dtype: str = "float32") -> float:
  """FLOP/s of a dense [n, n] @ [n, n] in `dtype` (torch's path)."""
  torch = _torch()
  g = torch.Generator().manual_seed(0)
  a = torch.randn(size, size, generator=g).to(getattr(torch, dtype))
  b = torch.randn(size, size, generator=g).to(getattr(torch, dtype))
  t = bs.timed(lambda: torch.mm(a, b), max(reps, 5), warmup=2)
  return 2.0 * size**3 / t["median_s"]


def run_decode(hf_dir: str, st: bs.Settings) -> dict:
  """HF `generate`, greedy, no early stop, DynamicCache (the default)."""
  torch, model = _load(hf_dir)
  from transformers import GenerationConfig  # pylint: disable=g-import-not-at-top

  model.eval()
  gen_cfg = GenerationConfig(
      max_new_tokens=st.decode_new,
      min_new_tokens=st.decode_new,
      do_sample=False,
      eos_token_id=None,
      pad_token_id=0,
      use_cache=True,
  )
  out = {}
  for b in st.decode_batches:
    ids = torch.as_tensor(
        bs.prompt_tokens(model.config.vocab_size, b, st.decode_prompt)
    )
    mask = torch.ones_like(ids)

    def generate():
      with torch.inference_mode():
        return model.generate(
            input_ids=ids, attention_mask=mask, generation_config=gen_cfg
        )

    def prefill():
      with torch.inference_mode():
        return model(input_ids=ids, attention_mask=mask, use_cache=True)

    gen = bs.timed(generate, st.torch_reps)
    pre = bs.timed(prefill, st.torch_reps)
    tokens = generate()[:, st.decode_prompt :].numpy()
    total = gen["median_s"]
    out[str(b)] = {
        "tokens_per_s": b * st.decode_new / total,
        "total_s": total,
        "prefill_s": pre["median_s"],
        "decode_tokens_per_s": b
        * st.decode_new
        / max(total - pre["median_s"], 1e-9),
        "compile_s": 0.0,  # Eager: nothing to compile.
        "first_row_tokens": tokens[0].tolist(),
    }
  out["peak_rss_mb"] = bs.peak_rss_mb()
  return out


def _train_step_time(
    torch, model, batch: int, seq: int, reps: int, dtype: str
) -> dict:
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  model.train()
  opt = torch.optim.AdamW(
      model.parameters(),
      lr=1e-4,
      betas=(0.9, 0.999),
      eps=1e-8,
      weight_decay=0.01,
  )
  tokens = torch.as_tensor(bs.train_tokens(model.config.vocab_size, batch, seq))
  inputs, targets = tokens[:, :-1], tokens[:, 1:]
  vocab = model.config.vocab_size

  def autocast():
    if dtype == "float32":
      return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=getattr(torch, dtype))

  def step():
    with autocast():
      logits = model(input_ids=inputs).logits
    loss = F.cross_entropy(
        logits.float().reshape(-1, vocab), targets.reshape(-1)
    )
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()

  t = bs.timed(step, reps, bs.TRAIN_WARMUP)
  return {"step_s": t["median_s"], "tokens_per_s": batch * seq / t["median_s"]}


def run_train(
    hf_dir: str, st: bs.Settings, flops_per_token: float, dtype: str
) -> dict:
  """PyTorch eager SFT step: forward, cross-entropy, backward, clip, AdamW.

  float32, or with `dtype="bfloat16"` the forward under `torch.autocast`
  (bf16 matmuls, float32 master weights), the usual mixed precision.
  """
  torch, model = _load(hf_dir)
  before = matmul_flops(st.matmul_size, st.torch_reps, dtype)
  out = _train_step_time(
      torch, model, st.train_batch, st.train_seq, st.torch_reps, dtype
  )
  # The faster of two measurements, as on our side (bench_jax.run_train).
  mm = max(before, matmul_flops(st.matmul_size, st.torch_reps, dtype))
  out["model_flops_per_s"] = flops_per_token * out["tokens_per_s"]
  out["matmul_flops_per_s"] = mm
  out["mfu_vs_matmul"] = out["model_flops_per_s"] / mm
  out["peak_rss_mb"] = bs.peak_rss_mb()
  return out


def run_grpo(
    hf_dir: str, st: bs.Settings, tokenizer_source: dict, dtype: str
) -> dict:
  """TRL `GRPOTrainer` steps with our settings; per-step wall time.

  Args:
    tokenizer_source: kwargs of `AutoTokenizer.from_pretrained` (the GGUF).
    dtype: "float32", or "bfloat16" for TRL's `bf16=True` (mixed precision
      through accelerate; the weights stay float32).
  """
  torch, model = _load(hf_dir)
  import datasets  # pylint: disable=g-import-not-at-top
  from transformers import AutoTokenizer, TrainerCallback  # pylint: disable=g-import-not-at-top
  import trl  # pylint: disable=g-import-not-at-top
  from trl.extras import profiling  # pylint: disable=g-import-not-at-top

  tokenizer = AutoTokenizer.from_pretrained(**tokenizer_source)
  tokenizer.padding_side = "left"
  pg, r, t = st.grpo_prompts, st.grpo_samples, st.grpo_new
  steps = 1 + st.torch_reps
  dataset = datasets.Dataset.from_dict(
      {"prompt": list(bs.GRPO_PROMPTS[:pg]) * (steps + 1)}
  )

  def code_reward(completions, **kwargs):
    del kwargs
    return [bs.code_reward(c) for c in completions]

  # TRL times its phases with `profiling_context`; record those durations.
  phases: list[tuple[str, float]] = []
  original = profiling.ProfilingContext._log_metrics

  def record(self, duration):
    phases.append((self.name, duration))
    return original(self, duration)

  profiling.ProfilingContext._log_metrics = record
  step_times: list[float] = []
  step_phases: list[list[tuple[str, float]]] = []

  class Timer(TrainerCallback):

    def on_step_begin(self, args, state, control, **kwargs):
      self.start = time.perf_counter()
      phases.clear()

    def on_step_end(self, args, state, control, **kwargs):
      step_times.append(time.perf_counter() - self.start)
      step_phases.append(list(phases))

  with tempfile.TemporaryDirectory() as out_dir:
    args = trl.GRPOConfig(
        output_dir=out_dir,
        use_cpu=True,
        bf16=dtype == "bfloat16",
        seed=0,
        per_device_train_batch_size=pg * r,
        num_generations=r,
        max_completion_length=t,
        beta=st.grpo_beta,
        temperature=1.0,
        learning_rate=1e-6,
        loss_type="dapo",
        gradient_checkpointing=False,  # Ours does not rematerialise either.
        generation_kwargs={"min_new_tokens": t},  # No early stop, as ours.
        max_steps=steps,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        shuffle_dataset=False,
        disable_tqdm=True,
    )
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=code_reward,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[Timer()],
    )
    trainer.train()
  profiling.ProfilingContext._log_metrics = original

  def phase(steps_phases, name):
    return [sum(d for n, d in p if name in n) for p in steps_phases]

  timed_phases = step_phases[1:]  # The first step is the warm-up.
  gen = phase(timed_phases, "generate")
  prep = phase(timed_phases, "_prepare_inputs")
  rew = phase(timed_phases, "code_reward")
  steps_s = step_times[1:]
  out = {
      "step_s": bs.median(steps_s),
      "first_step_s": step_times[0],
      "generate_s": bs.median(gen),
      "reward_s": bs.median(rew),
      # What `_prepare_inputs` spends besides generation and rewards: the
      # reference (and old-policy) log-prob passes plus bookkeeping.
      "reference_s": bs.median([p - g - w for p, g, w in zip(prep, gen, rew)]),
      "update_s": bs.median([s - p for s, p in zip(steps_s, prep)]),
      "implementation": f"trl {trl.__version__} GRPOTrainer",
      "peak_rss_mb": bs.peak_rss_mb(),
  }
  return out


def available() -> dict[str, str | None]:
  """Which baseline packages import; None when fine, else the reason."""
  status = {}
  for name in ("torch", "transformers", "trl"):
    try:
      __import__(name)
      status[name] = None
    except Exception as e:  # pylint: disable=broad-except
      status[name] = f"{type(e).__name__}: {e}"
  return status


JOBS = {
    "decode": run_decode,
    "train": run_train,
    "grpo": run_grpo,
}
