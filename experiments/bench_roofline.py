"""Roofline bounds of the benchmark: the least time any implementation could
take for a decode or a GRPO step on the measured machine.

Owns `decode_roofline` and `grpo_roofline` (the bounds, from a matmul FLOP/s
and a read bytes/s that our workers measure in the same run, see
`bench_jax.roofline`), and `add_decode_ceilings` / `add_grpo_ceiling`, which
turn them into each result entry's `ceiling` (the baseline's time over the
bound: the best ratio reachable) and `ours_vs_roofline`.
"""

from __future__ import annotations

from typing import Sequence

from experiments import bench_setup as bs


def decode_roofline(
    *,
    matmul_params: int,
    head_params: int,
    weight_bytes: float,
    batch: int,
    prompt: int,
    new: int,
    flops_per_s: float,
    bytes_per_s: float,
    kv_bytes_per_slot: float = 0.0,
) -> float:
  """Least seconds a greedy decode of `new` tokens after `prompt` can take.

  Each forward pass does 2 FLOPs per matmul parameter and token and reads
  every weight at least once; it takes at least the larger of the two
  times. The prefill runs the prompt through everything but the output head,
  which it needs at the last position only; its logits give the first new
  token, so `new - 1` single-token steps follow. Each of those steps also
  reads the keys and values its token attends to: every row's earlier
  tokens, `kv_bytes_per_slot` each (all layers' keys and values of one
  token, in the cache's dtype; 0 leaves the cache out, as runs before
  b51ac70 did). Attention's FLOPs and everything else are ignored: a
  lower bound on time, hence an upper bound on speed, as tight as the
  measured rates are true maxima.
  """
  read = weight_bytes / bytes_per_s
  prefill_flops = (
      2 * batch * ((matmul_params - head_params) * prompt + head_params)
  )
  step_flops = 2 * batch * matmul_params
  steps = sum(
      max(
          step_flops / flops_per_s,
          read + batch * (prompt + t) * kv_bytes_per_slot / bytes_per_s,
      )
      for t in range(new - 1)
  )
  return max(prefill_flops / flops_per_s, read) + steps


def add_decode_ceilings(entry: dict, st: bs.Settings) -> None:
  """Adds `ceiling` and `ours_vs_roofline` per batch size to a decode entry.

  ceiling: HF's time over the roofline time, the best ours/HF reachable here
  (needs HF's run); ours_vs_roofline: the roofline time over ours. None
  where unknown.
  """
  ours, hf = entry["ours"] or {}, entry["hf"] or {}
  roof = ours.get("roofline")
  entry["ceiling"], entry["ours_vs_roofline"] = {}, {}
  for b in map(str, st.decode_batches):
    t_min = None
    if roof and b in ours:
      t_min = decode_roofline(
          matmul_params=roof["matmul_params"],
          head_params=roof["head_params"],
          weight_bytes=roof["weight_bytes"],
          batch=int(b),
          prompt=st.decode_prompt,
          new=st.decode_new,
          flops_per_s=roof["matmul_flops_per_s"],
          bytes_per_s=roof["read_bytes_per_s"],
          kv_bytes_per_slot=roof.get("kv_bytes_per_slot", 0.0),
      )
    hf_s = int(b) * st.decode_new / hf[b]["tokens_per_s"] if b in hf else None
    entry["ceiling"][b] = hf_s / t_min if t_min and hf_s else None
    entry["ours_vs_roofline"][b] = t_min / ours[b]["total_s"] if t_min else None


def grpo_roofline(
    *,
    matmul_params: int,
    head_params: int,
    weight_bytes: float,
    prompt_tokens: Sequence[int],
    group: int,
    new: int,
    reference: bool,
    flops_per_s: float,
    bytes_per_s: float,
    kv_bytes_per_slot: float = 0.0,
) -> dict[str, float]:
  """Least seconds one GRPO step can take, and each of its phases alone.

  Counts only the work no implementation of the step (one policy update per
  step, decoding one token per read of the weights) can skip, at 2 FLOPs
  per matmul parameter and token of a forward pass. A group's rows share
  their prompt (`prompt_tokens` has one count per group, without padding),
  so each prompt passes through a model once per phase, and the output head
  runs only where logits are needed: at each prompt's last position (once
  per group) and at every completion token but the last.

  generate_s   a prefill of the prompts, then `new - 1` single-token steps
               of every row, each pass reading every weight once and the
               keys and values its tokens attend to (`kv_bytes_per_slot`
               per token, as in `decode_roofline`; a group's rows read
               their shared prompt's once);
  reference_s  (when `reference`) a forward pass of the reference weights
               over the prompts and the completions' fed tokens;
  update_s     the backward pass only (twice the reference pass's FLOPs):
               with one update per step the policy's forward pass over
               those tokens is generation's own (same weights, same
               tokens), so an implementation could keep its activations;
  step_s       the step: the reference pass may overlap generation, but the
               update needs every reward, hence every completion, so at
               least max((generation + reference FLOPs) / flops_per_s,
               their weight and cache reads / bytes_per_s) + update_s.

  Each phase alone takes at least the larger of its FLOP time and one read
  of its weights per pass. Attention's FLOPs, sampling, the reward, the
  optimizer and everything else are ignored: a lower bound on time, as
  tight as the measured rates are true maxima (see `decode_roofline`).
  """
  body = matmul_params - head_params
  prompts, rows = len(prompt_tokens), len(prompt_tokens) * group
  read = weight_bytes / bytes_per_s

  def pass_s(flops, cached_slots=0):
    return max(
        flops / flops_per_s,
        read + cached_slots * kv_bytes_per_slot / bytes_per_s,
    )

  # Cached tokens the t-th single-token step's rows attend to.
  cached = [sum(prompt_tokens) + rows * t for t in range(new - 1)]

  prefill = 2 * (body * sum(prompt_tokens) + head_params * prompts)
  decode_step = 2 * rows * matmul_params
  scored = 2 * (
      body * (sum(prompt_tokens) + rows * (new - 1))
      + head_params * (prompts + rows * (new - 1))
  )
  ref_flops = scored if reference else 0
  out = {
      "generate_s": pass_s(prefill)
      + sum(pass_s(decode_step, c) for c in cached),
      "reference_s": pass_s(scored) if reference else 0.0,
      "update_s": pass_s(2 * scored),
  }
  overlapped = max(
      (prefill + (new - 1) * decode_step + ref_flops) / flops_per_s,
      (new + int(reference)) * read
      + sum(cached) * kv_bytes_per_slot / bytes_per_s,
  )
  out["step_s"] = overlapped + out["update_s"]
  return out


def add_grpo_ceiling(entry: dict) -> None:
  """Adds `roofline` (least step and phase times), `ceiling` (TRL's step
  over the least step time: the best TRL/ours reachable here; needs TRL's
  run) and `ours_vs_roofline` to a GRPO entry; None where unknown."""
  ours = entry["ours"] or {}
  roof = ours.get("roofline")
  entry["roofline"] = entry["ceiling"] = entry["ours_vs_roofline"] = None
  if not roof:
    return
  t_min = grpo_roofline(
      **{
          k: roof[k]
          for k in (
              "matmul_params",
              "head_params",
              "weight_bytes",
              "prompt_tokens",
              "group",
              "new",
              "reference",
          )
      },
      flops_per_s=roof["matmul_flops_per_s"],
      bytes_per_s=roof["read_bytes_per_s"],
      kv_bytes_per_slot=roof.get("kv_bytes_per_slot", 0.0),
  )
  entry["roofline"] = t_min
  entry["ours_vs_roofline"] = t_min["step_s"] / ours["step_s"]
  trl = entry["trl"] or {}
  if "step_s" in trl:
    entry["ceiling"] = trl["step_s"] / t_min["step_s"]
