"""The benchmark's readable table, printed before the JSON result.

Owns `table(result)`: the run's machine and skipped parts, then one block
per section (decode, train step, GRPO step, scaling) with our figures, the
baseline's and their ratio (for decode and GRPO also its roofline ceiling
and the machine rates behind it), and the targets met or missed (decode and
GRPO ratios with their ceiling).
"""

from __future__ import annotations

from typing import Any


def _fmt(x: Any, spec: str = ".1f") -> str:
  if isinstance(x, (int, float)):
    return format(x, spec)
  return "-"


def _scaling_row(kind: str, model: str, d: dict) -> str:
  """One model's decode (ms/token per T) or train (tokens/s per L) row."""
  if "error" in d:
    return f"  {kind} {model}: error {d['error'].splitlines()[-1]}"
  points = {k: v for k, v in d.items() if isinstance(v, dict)}
  if kind == "decode":
    cells = "  ".join(
        f"T={k}: {v['ms_per_token']:.2f}" for k, v in points.items()
    )
    what = f"B={d['batch']} ms/token  {cells}  max/min {d['max_over_min']:.2f}"
  else:
    cells = "  ".join(
        f"L={k}: {v['tokens_per_s']:.0f}" for k, v in points.items()
    )
    what = f"tokens/s  {cells}"
  return f"  {kind:6s} {model:8s} {what}  RSS {d['peak_rss_mb']:.0f} MB"


def _kv(roof: dict) -> str:
  """The KV cache's bytes per token the roofline counts (runs before
  b51ac70 left the cache out)."""
  kv = roof.get("kv_bytes_per_slot")
  return f" + KV cache {kv / 1e3:.3g} KB per token" if kv else ""


def _roofline_row(model: str, roof: dict, e: dict) -> str:
  """The decode roofline's two measured rates, and our share of its speed."""
  shares = "/".join(
      _fmt(x, ".2f") for x in e.get("ours_vs_roofline", {}).values()
  )
  return (
      f"  {model:8s} roofline rates: f32 matmul "
      f"{roof['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s, read "
      f"{roof['read_bytes_per_s'] / 1e9:.1f} GB/s over "
      f"{roof['weight_bytes'] / 1e6:.3g} MB{_kv(roof)}; ours at {shares} of"
      " roofline speed "
      f"(B={'/'.join(e.get('ours_vs_roofline', {}))})"
  )


def _grpo_roofline_row(model: str, e: dict) -> str:
  """The GRPO step's least time and its phases' alone (the step overlaps
  generation and the reference pass), the rates they come from, and our
  share of its speed."""
  t, roof = e["roofline"], e["ours"]["roofline"]
  return (
      f"  {model:12s} roofline: step {t['step_s']:.2f} (alone: gen "
      f"{t['generate_s']:.2f}  ref {t['reference_s']:.2f}  update "
      f"{t['update_s']:.2f}; matmul {roof['matmul_flops_per_s'] / 1e9:.0f}"
      f" GFLOP/s, read {roof['read_bytes_per_s'] / 1e9:.1f} GB/s over "
      f"{roof['weight_bytes'] / 1e6:.3g} MB{_kv(roof)}); ours at "
      f"{_fmt(e.get('ours_vs_roofline'), '.2f')} of roofline speed"
  )


def table(result: dict) -> str:
  """A readable summary of `result`."""
  lines = []
  m = result["meta"]
  lines.append(
      f"rlcs_jax benchmark {m['date']}  {m['machine']['cpu']}, "
      f"{m['machine']['cores']} cores  (CPU figures"
      f"{', --quick' if m['quick'] else ''})"
  )
  malloc = m.get("malloc")
  if malloc:
    lines.append(
        f"  malloc: ours {malloc['ours']}; baselines {malloc['baselines']}"
    )
  for k, v in result["skipped"].items():
    lines.append(f"  skipped {k}: {v.splitlines()[-1] if v else v}")
  if "decode" in result:
    lines.append(
        "\nDECODE (greedy, float32; tokens/s incl. prefill; "
        "compile excluded)"
    )
    lines.append(
        f"  {'model':8s} {'B':>3s} {'ours tok/s':>11s} "
        f"{'HF tok/s':>9s} {'ratio':>6s} {'ceiling':>7s} "
        f"{'ours prefill':>12s} "
        f"{'HF prefill':>10s} {'compile':>8s} {'RSS MB o/h':>12s}"
    )
    for model, e in result["decode"].items():
      o, h = e["ours"] or {}, e["hf"] or {}
      if "error" in o:
        lines.append(f"  {model:8s} ours error: {o['error'].splitlines()[-1]}")
      if "error" in h:
        lines.append(f"  {model:8s} HF error: {h['error'].splitlines()[-1]}")
      for b, r in e["ratio"].items():
        ob, hb = o.get(b) or {}, h.get(b) or {}
        lines.append(
            f"  {model:8s} {b:>3s} {_fmt(ob.get('tokens_per_s')):>11s} "
            f"{_fmt(hb.get('tokens_per_s')):>9s} {_fmt(r, '.2f'):>6s} "
            f"{_fmt(e.get('ceiling', {}).get(b), '.2f'):>7s} "
            f"{_fmt(1e3 * ob['prefill_s'] if ob else None):>10s}ms "
            f"{_fmt(1e3 * hb['prefill_s'] if hb else None):>8s}ms "
            f"{_fmt(ob.get('compile_s')):>7s}s "
            f"{_fmt(o.get('peak_rss_mb'), '.0f'):>5s}/"
            f"{_fmt(h.get('peak_rss_mb'), '.0f'):<5s}"
        )
      if "greedy_prefix_agreement" in e:
        lines.append(
            f"  {model:8s} greedy tokens equal to HF's before the "
            f"first divergence (median row): {e['greedy_prefix_agreement']:.2f}"
        )
      if "roofline" in o:
        lines.append(_roofline_row(model, o["roofline"], e))
  if "train" in result:
    lines.append(
        "\nTRAIN STEP (SFT fwd+bwd+AdamW; bf16 rows: bf16 matmul inputs, f32"
        " accumulation and master weights / torch.autocast bf16)"
    )
    lines.append(
        f"  {'model':12s} {'ours tok/s':>10s} {'torch tok/s':>11s} "
        f"{'ratio':>6s} {'ours GFLOP/s':>12s} {'matmul':>7s} "
        f"{'MFU':>5s} {'torch MFU':>9s} {'compile':>8s} "
        f"{'RSS MB o/t':>12s}"
    )
    for model, e in result["train"].items():
      o, t = e["ours"] or {}, e["torch"] or {}
      for who, d in (("ours", o), ("torch", t)):
        if "error" in d:
          lines.append(
              f"  {model:12s} {who} error: " f"{d['error'].splitlines()[-1]}"
          )
      lines.append(
          f"  {model:12s} {_fmt(o.get('tokens_per_s'), '.0f'):>10s} "
          f"{_fmt(t.get('tokens_per_s'), '.0f'):>11s} "
          f"{_fmt(e['ratio'], '.2f'):>6s} "
          f"{_fmt(o.get('model_flops_per_s', 0) / 1e9):>12s} "
          f"{_fmt(o.get('matmul_flops_per_s', 0) / 1e9, '.0f'):>7s} "
          f"{_fmt(o.get('mfu_vs_matmul'), '.2f'):>5s} "
          f"{_fmt(t.get('mfu_vs_matmul'), '.2f'):>9s} "
          f"{_fmt(o.get('compile_s')):>7s}s "
          f"{_fmt(o.get('peak_rss_mb'), '.0f'):>5s}/"
          f"{_fmt(t.get('peak_rss_mb'), '.0f'):<5s}"
      )
  if "grpo" in result:
    lines.append(
        "\nGRPO STEP (seconds; generate / reference / reward / update;"
        " bf16 rows: ours bf16 compute, TRL bf16=True)"
    )
    for model, e in result["grpo"].items():
      for who in ("ours", "trl"):
        d = e.get(who)
        if d is None:
          continue
        if "error" in d:
          lines.append(
              f"  {model:12s} {who:5s} error: " f"{d['error'].splitlines()[-1]}"
          )
          continue
        lines.append(
            f"  {model:12s} {who:5s} step {_fmt(d['step_s'], '.2f'):>6s}  "
            f"gen {_fmt(d['generate_s'], '.2f')}  ref "
            f"{_fmt(d['reference_s'], '.2f')}  reward "
            f"{_fmt(d['reward_s'], '.3f')}  update "
            f"{_fmt(d['update_s'], '.2f')}  other "
            f"{_fmt(d.get('other_s'), '.2f')}  RSS "
            f"{_fmt(d.get('peak_rss_mb'), '.0f')} MB"
        )
      lines.append(
          f"  {model:12s} ratio (TRL step / ours) {_fmt(e['ratio'], '.2f')}"
          f"  ceiling {_fmt(e.get('ceiling'), '.2f')}"
      )
      if e.get("roofline"):
        lines.append(_grpo_roofline_row(model, e))
  if "scaling" in result:
    lines.append("\nSCALING (ours)")
    for kind in ("decode", "train"):
      for model, d in result["scaling"][kind].items():
        lines.append(_scaling_row(kind, model, d))
  if result.get("targets"):
    lines.append("\nTARGETS")
    for t in result["targets"]:
      ceiling = t.get("ceiling")
      lines.append(
          f"  {'MET ' if t['met'] else 'MISS'} {t['target']:34s} "
          f"{t['value']:.2f} (target {t['threshold']}"
          f"{'' if ceiling is None else f'; ceiling {ceiling:.2f}'})"
      )
  return "\n".join(lines)
