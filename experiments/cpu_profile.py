"""The profiles behind the README's Performance notes (CPU).

  python -m experiments.cpu_profile \
      [--sections matmul,decode,train,attention,logprobs,sampling,prefill,
                  rollout,prompt_share,grpo_step,compiler]
  XLA_FLAGS=--xla_cpu_use_onednn=true python -m experiments.cpu_profile \
      --sections decode        # the same decode under another XLA CPU path

matmul  the matmuls that bound decode and bf16 training, in JAX and (when
        installed) torch on the same shapes: ms per decode-shaped matmul
        (SmolLM2's MLP at B = 8 in f32 and B = 16 in bf16) with the weights
        as the right operand (canonical layout) and as the left one (the
        sampler's layout on CPU); GFLOP/s of the tied head's bf16
        gradients: the weight gradient dW = x^T g written as a dot over
        the leading axis vs with a pre-transposed x, and the input
        gradient dx = g W (contracting the vocabulary) as one dot vs in
        blocks of the contraction.
decode  a SmolLM2-shaped model (random weights) decoding B=8 x 512 tokens in
        float32: ms per token and the share of executed op time per kind of
        XLA op and source op (layers merged), read from a `jax.profiler`
        trace and the decode loop's compiled HLO.
train   the same model's SFT step (B=8 x 256, forward + backward + AdamW) in
        float32 and with bfloat16 compute: seconds per step, the minor page
        faults and kernel time of one step, and the same op-time shares.
attention  one SmolLM2-shaped layer's attention over the new tokens (B=8,
        L=256, causal), forward and forward + backward, in float32 and
        with bfloat16 products: `attention.self_attention` (custom VJP)
        vs the einsum version differentiated by JAX that it replaced
        (`attention.segment_attention` with one uncached segment), interleaved.
logprobs  GRPO's completion log-probs and entropies over SmolLM2's vocabulary
        ([16, 128, 49152] float32 logits, a GRPO step's completions):
        `token_logprobs_and_entropy` (one native variadic reduction) vs
        the same quantities from jnp reductions (logsumexp, then a softmax
        for the entropy), forward alone (the reference pass) and forward +
        backward (the update), interleaved in one process.
rollout  a GRPO rollout's generation (SmolLM2 shape, random weights, B = 16,
        prompt 16 + 128 sampled tokens, bf16 compute) with a float32 and
        with a bf16 KV cache, interleaved: ms per sampled token.
prompt_share  GRPO's completion log-probs (the reference pass) and their
        gradient (the update's forward + backward) for SmolLM2's shape
        (random weights, bf16 compute), B = 16 rows of 4 prompts x 4
        completions of 128 tokens, prompts of 16 and of 128 tokens: the
        per-row pass vs the shared prompt pass (`grpo.share_prompt_pass`,
        each prompt run once), interleaved.
grpo_step  the benchmark's GRPO step (`experiments/bench_jax.py:grpo_trainer`,
        SmolLM2, bf16 compute, the benchmark's settings): seconds per phase
        of a warm step and the share of executed op time per kind of XLA
        op in the rollout (generation) and in `train_step` (the reference
        pass and the update). Not in the default sections (it loads the
        GGUF and compiles the whole step, ~3 min).
compiler  the SmolLM2-shaped SFT step (random weights, B=8 x 256) and the
        benchmark's GRPO update and reference pass (as in grpo_step), in
        float32 and with bfloat16 compute, each compiled with and without
        `compiler.COMPILER_OPTIONS` (copy insertion with region analysis)
        and timed alternately in one process: seconds per call. Not in the
        default sections (~10 min).
sampling  one sampled token's choice over SmolLM2's vocabulary at B = 16
        (a GRPO rollout's batch): `sampling._choose` (one uniform number
        per row, inverse CDF) vs the Gumbel-max draw (the same draw as
        `jax.random.categorical`) it replaced, 128 choices in a jitted
        loop; then the choice from the [V, B] logits of a decode step's
        weights-left head, transposed to [B, V] first vs reduced where they
        lie (`decode`'s vocabulary-major loop): greedy at B = 32 and 8 (the
        decode benchmark's), sampled at B = 16.
prefill  the sampler's prefill of 64-token prompts at B = 1 and 32 on the tiny
        model's and SmolLM2's shapes (random weights, float32):
        `sampling.prefill`, which runs the output head at each row's last
        prompt token only, vs the head over every prompt position (what it
        replaced), interleaved.

The GRPO sections (logprobs, prompt_share, rollout, grpo_step, compiler)
live in `cpu_profile_grpo`, the shared timing and trace helpers in
`profile_tools`. Like `rlcs_jax.main`, it first calls
`host_memory.reuse_freed_memory()`; RLCS_JAX_MALLOC=default profiles with
glibc's default malloc instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import resource

import jax
import jax.numpy as jnp
import numpy as np

from experiments import cpu_profile_grpo
from experiments import profile_tools as tools
from rlcs_jax import host_memory
from rlcs_jax.model.config import PRESETS, ModelConfig
from rlcs_jax.model import attention as attention_lib
from rlcs_jax.model import kv_cache
from rlcs_jax.model import matmul as matmul_lib
from rlcs_jax.model.transformer import Transformer
from rlcs_jax.sampler import sampling


def matmul() -> None:
  """Decode-shaped matmuls in both weight layouts, then the head's
  gradients."""
  for m, k, n, dt in (
      (8, 576, 3072, "float32"),
      (8, 1536, 576, "float32"),
      (16, 576, 3072, "bfloat16"),
      (16, 1536, 576, "bfloat16"),
  ):
    _decode_matmuls(m, k, n, jnp.dtype(dt))
  _head_gradients()


def _decode_matmuls(m: int, k: int, n: int, dtype, layers: int = 30) -> None:
  """ms per matmul of a decode step's kind: [m, k] x [k, n] against each of
  `layers` different weight matrices (a SmolLM2 step's worth, so the
  weights stream from memory as in decode), in one jitted call.

  x @ w with w [k, n] (the canonical layout), and with the weights as the
  left operand (w [n, k], `matmul_lib.weights_left_matmul`, the sampler's
  layout on CPU); torch `F.linear` (w [n, k], what HF runs) when installed.
  """
  keys = jax.random.split(jax.random.key(0), layers)
  w_kn = [
      jax.random.normal(kk, (k, n), jnp.float32).astype(dtype) for kk in keys
  ]
  w_nk = [w.T for w in w_kn]  # Copies, stored [n, k].
  x = jnp.ones((m, k), dtype)
  forms = {
      "x @ w": (lambda x, w: matmul_lib.matmul(x, w, dtype), w_kn),
      "weights left": (
          lambda x, w: matmul_lib.weights_left_matmul(x, w, dtype),
          w_nk,
      ),
  }
  line = f"  decode {dtype.name:8s} [{m},{k}]x[{k},{n}] x{layers}:"
  for name, (mm, ws) in forms.items():
    fn = jax.jit(lambda x, ws, mm=mm: [jnp.sum(mm(x, w)) for w in ws])
    secs = tools.median_s(lambda: jax.block_until_ready(fn(x, ws)), 20)
    line += f"  {name} {1e3 * secs / layers:.3f} ms"
  try:
    import torch  # pylint: disable=g-import-not-at-top

    tdt = getattr(torch, dtype.name)
    tx = torch.ones(m, k, dtype=tdt)
    tws = [torch.from_numpy(np.array(w, np.float32)).to(tdt) for w in w_nk]
    linear = torch.nn.functional.linear
    tsecs = tools.median_s(lambda: [linear(tx, w).sum() for w in tws], 20)
    line += f"  torch linear {1e3 * tsecs / layers:.3f} ms"
  except ImportError:
    line += "  torch not installed"
  print(line + " (per matmul)", flush=True)


def _head_gradients() -> None:
  """The tied SmolLM2 head's bf16 gradients, each two ways: the weight
  gradient dW = x^T g and the input gradient dx = g W."""
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
  x, g, w = (jnp.ones(s, bf16) for s in ((m, d), (m, v), (v, d)))
  # dW = x^T g: as one dot over the leading axis (XLA:CPU upcasts it to
  # float32) and as the library computes it, through a materialised x^T
  # (matmul_lib.transposed). dx = g W contracts the vocabulary: as one dot
  # and as the library computes it on CPU, in blocks of the contraction.
  xt_g = lambda t: t["x"].T @ t["g"]
  g_w = lambda t: t["g"] @ t["w"]
  cases = [  # (name, fn, args, the same product in torch)
      ("head dW bf16 x^T g (leading axis)", dot((0, 0)), (x, g), xt_g),
      (
          "head dW bf16 x^T g (materialised x^T)",
          jax.jit(lambda a, b: dot((1, 0))(matmul_lib.transposed(a), b)),
          (x, g),
          xt_g,
      ),
      ("head dx bf16 g W (one dot)", dot((1, 0)), (g, w), g_w),
      (
          "head dx bf16 g W (contraction blocks)",
          jax.jit(matmul_lib._long_contraction_mm),
          (g, w),
          g_w,
      ),
  ]
  try:
    import torch  # pylint: disable=g-import-not-at-top

    t = {
        n: torch.ones(*a.shape, dtype=torch.bfloat16)
        for n, a in zip("xgw", (x, g, w))
    }
  except ImportError:
    t = None
  flops = 2.0 * m * d * v
  for name, fn, args, torch_fn in cases:
    secs = tools.median_s(lambda: fn(*args).block_until_ready())
    line = f"  {name:40s} jax {flops / secs / 1e9:7.0f} GFLOP/s"
    line += f" ({secs * 1e3:.1f} ms)"
    if t is None:
      line += "   torch not installed"
    else:
      tsecs = tools.median_s(lambda: torch_fn(t))
      line += f"   torch {flops / tsecs / 1e9:7.0f} GFLOP/s"
    print(line, flush=True)


def decode(batch: int = 8, new: int = 512) -> None:
  cfg = ModelConfig(**PRESETS["smollm2_135m"])
  params = tools.random_params(cfg)
  tokens, valid = tools.random_prompts(cfg, batch, 64)
  scfg = sampling.SamplingConfig(
      max_new_tokens=new, greedy=True, stop_ids=(), prompt_buckets=(64,)
  )

  def generate():
    jax.block_until_ready(
        sampling.generate_arrays(
            params, tokens, valid, jax.random.key(0), model_cfg=cfg, cfg=scfg
        )
    )

  def prefill():
    return jax.block_until_ready(
        sampling.prefill(params, tokens, valid, model_cfg=cfg)
    )

  total, pre = tools.median_s(generate, 3), tools.median_s(prefill, 3)
  print(
      f"  B={batch} f32, {new} new tokens: {1e3 * (total - pre) / new:.1f} ms"
  )
  # The decode loop's compiled HLO names each executed op's source.
  state = sampling.initial_state(*prefill(), jax.random.key(0), scfg)
  hlo = (
      sampling.decode.lower(params, state, model_cfg=cfg, cfg=scfg)
      .compile()
      .as_text()
  )
  sources = {
      name: re.sub(r"layers_\d+", "layers_i", op).removeprefix("jit(decode)/")
      for name, op in re.findall(
          r"%([\w.\-]+) = [^\n]*?metadata=\{op_name=\"([^\"]+)\"", hlo
      )
  }
  tools.op_time_breakdown(generate, "prefill + decode", top=8, sources=sources)


def train(batch: int = 8, seq: int = 256) -> None:
  """One SmolLM2-shaped SFT step (fwd + bwd + AdamW) in each compute dtype."""
  from experiments import bench_jax  # pylint: disable=g-import-not-at-top

  for dtype in ("float32", "bfloat16"):
    cfg = dataclasses.replace(
        ModelConfig(**PRESETS["smollm2_135m"]), dtype=dtype
    )
    run = bench_jax.train_step_runner(cfg, tools.random_params(cfg), batch, seq)
    secs = tools.median_s(run, 3)
    before = resource.getrusage(resource.RUSAGE_SELF)
    run()
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"  B={batch} L={seq} {dtype}: {secs:.2f} s per step; one more step:"
        f" {after.ru_minflt - before.ru_minflt} minor page faults,"
        f" {after.ru_stime - before.ru_stime:.1f} s kernel time"
    )
    tools.op_time_breakdown(run, "one step")


def attention(batch: int = 8, length: int = 256, reps: int = 7) -> None:
  cfg = ModelConfig(**PRESETS["smollm2_135m"])
  n, k, h = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
  keys = jax.random.split(jax.random.key(0), 4)
  q, w = (jax.random.normal(x, (batch, length, n, h)) for x in keys[:2])
  kk, v = (jax.random.normal(x, (batch, length, k, h)) for x in keys[2:])
  mask = jnp.broadcast_to(
      jnp.tril(jnp.ones((length, length), bool)), (batch, length, length)
  )

  def einsum_version(q, kk, v, dt):  # What self_attention replaced.
    segment = (kk, v, mask, False)
    return attention_lib.segment_attention(q, [segment], dt)[0]

  def custom_vjp_version(q, kk, v, dt):
    return attention_lib.self_attention(q, kk, v, mask, dt)

  versions = {
      "einsum + autodiff": einsum_version,
      "self_attention": custom_vjp_version,
  }
  runs = {}
  for dtype in ("float32", "bfloat16"):
    dt = jnp.dtype(dtype)
    for name, fn in versions.items():
      forward = jax.jit(lambda q, kk, v, fn=fn, dt=dt: fn(q, kk, v, dt))
      runs[dtype, "forward", name] = lambda f=forward: f(q, kk, v)
      grad = jax.jit(
          jax.grad(
              lambda q, kk, v, fn=fn, dt=dt: jnp.sum(fn(q, kk, v, dt) * w),
              (0, 1, 2),
          )
      )
      runs[dtype, "fwd + bwd", name] = lambda f=grad: f(q, kk, v)
  for (dtype, what, name), secs in sorted(
      tools.interleaved_median_s(runs, reps).items()
  ):
    print(f"  {dtype:8s} {what:9s} {name:17s} {1e3 * secs:6.2f} ms")


def prefill(prompt: int = 64, reps: int = 5) -> None:
  """`sampling.prefill` (the output head at each row's last prompt token)
  vs the head over every prompt position (`prefill` at 162f4cd^), on the
  tiny model's and SmolLM2's shapes (random weights, float32), interleaved."""

  def all_positions(params, tokens_BP, valid_BP, model_cfg):
    logits_BPV, cache = Transformer(model_cfg).apply(
        {"params": params},
        tokens_BP,
        valid_BL=valid_BP,
        cache=kv_cache.init_cache(model_cfg, tokens_BP.shape[0], 0),
    )
    last = tokens_BP.shape[1] - 1 - jnp.argmax(valid_BP[:, ::-1], axis=-1)
    logits = jnp.take_along_axis(logits_BPV, last[:, None, None], axis=1)
    return logits[:, 0], cache

  for name in ("tiny", "smollm2_135m"):
    cfg = ModelConfig(**PRESETS[name])
    params = tools.random_params(cfg)
    old = jax.jit(functools.partial(all_positions, model_cfg=cfg))
    for batch in (1, 32):
      tokens, valid = tools.random_prompts(cfg, batch, prompt)
      runs = {
          "every position": lambda: old(params, tokens, valid),
          "last position": lambda: sampling.prefill(
              params, tokens, valid, model_cfg=cfg
          ),
      }
      for what, secs in tools.interleaved_median_s(runs, reps).items():
        print(
            f"  {name:12s} B={batch:2d} x {prompt}, head at {what:14s}"
            f" {1e3 * secs:7.1f} ms"
        )


def sampling_choice(batch: int = 16, steps: int = 128, reps: int = 5) -> None:
  vocab = PRESETS["smollm2_135m"]["vocab_size"]
  logits = 4 * jax.random.normal(jax.random.key(0), (batch, vocab))
  cfg = sampling.SamplingConfig(max_new_tokens=1)

  def gumbel(z, key):  # The draw `_choose` replaced (486673d^).
    top = jnp.max(z, axis=-1, keepdims=True)
    log_total = jnp.log(jnp.sum(jnp.exp(z - top), axis=-1))
    noise = jax.random.gumbel(key, z.shape, z.dtype)
    token = sampling._first_argmax(z + noise)  # pylint: disable=protected-access
    return (
        token,
        jnp.take_along_axis(z - top, token[:, None], 1)[:, 0] - log_total,
    )

  ours = lambda z, key: sampling._choose(z, key, cfg)  # pylint: disable=protected-access
  choosers = {"Gumbel-max": gumbel, "inverse CDF": ours}
  for name, ms in _choice_ms(choosers, logits, 0, steps, reps).items():
    print(f"  {name:12s} {ms:.2f} ms per token")
  for rows, greedy in ((32, True), (8, True), (batch, False)):
    _choice_layouts(vocab, rows, greedy, steps, reps)


def _choice_layouts(vocab: int, rows: int, greedy: bool, steps: int, reps):
  """The choice from [V, B] logits, as a decode step's weights-left head
  gives them: transposed to [B, V] first (`decode` at 74156ac) or
  reduced over V where they lie (`vocab_axis=0`)."""
  cfg = sampling.SamplingConfig(max_new_tokens=1, greedy=greedy)
  logits_VB = 4 * jax.random.normal(jax.random.key(0), (vocab, rows))
  # A select the compiler cannot fold, as after the head's dot.
  unfolded = lambda z: jnp.where(z > jnp.inf, 0.0, z)
  choose = sampling._choose  # pylint: disable=protected-access
  choosers = {
      "[B, V]": lambda z, key: choose(unfolded(z).T, key, cfg, 1),
      "[V, B]": lambda z, key: choose(unfolded(z), key, cfg, 0),
  }
  what = "greedy" if greedy else "sampled"
  for name, ms in _choice_ms(choosers, logits_VB, 1, steps, reps).items():
    print(f"  {what}, B={rows}, from {name}: {ms:.2f} ms")


def _choice_ms(choosers: dict, logits, batch_axis: int, steps: int, reps):
  """ms per token of each `choose(logits, key)`: `steps` choices chained in
  a jitted loop (each step's logits depend on the last choice), timed
  alternately; the rows of `logits` lie on `batch_axis`."""
  runs = {}
  for name, choose in choosers.items():

    def loop(z, key, choose=choose):
      def body(i, acc):
        token, logp = choose(
            z + jnp.expand_dims(acc, 1 - batch_axis),
            jax.random.fold_in(key, i),
        )
        return acc + 1e-3 * logp + 1e-6 * token

      rows = jnp.zeros((z.shape[batch_axis],))
      return jax.lax.fori_loop(0, steps, body, rows)

    runs[name] = lambda f=jax.jit(loop): f(logits, jax.random.key(1))
  return {
      name: 1e3 * secs / steps
      for name, secs in tools.interleaved_median_s(runs, reps).items()
  }


def main() -> None:
  host_memory.reuse_freed_memory()  # As `rlcs_jax.main` does.
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
      "--sections",
      default=(
          "matmul,decode,train,attention,logprobs,sampling,prefill,rollout,"
          "prompt_share"
      ),
  )
  args = parser.parse_args()
  sections = dict(
      matmul=matmul,
      decode=decode,
      train=train,
      attention=attention,
      logprobs=cpu_profile_grpo.logprobs,
      sampling=sampling_choice,
      prefill=prefill,
      rollout=cpu_profile_grpo.rollout,
      prompt_share=cpu_profile_grpo.prompt_share,
      grpo_step=cpu_profile_grpo.grpo_step,
      compiler=cpu_profile_grpo.compiler_options,
  )
  for section in args.sections.split(","):
    print(section.upper(), flush=True)
    sections[section]()


if __name__ == "__main__":
  main()
