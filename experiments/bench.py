"""Benchmark: rlcs_jax against Hugging Face `generate`, PyTorch and TRL.

  python -m experiments.bench [--quick] [--out FILE] [--sections ...]

Measures, in one run and on the same weights (our parameters exported with
`save_hf_checkpoint` and loaded by `LlamaForCausalLM`):

  decode   greedy, float32, prompt 64 + 128 new tokens (no early stop), batch
           1/8/32: tokens/s of our sampler and of HF `generate`, their ratio,
           prefill time and compile time (excluded from throughput); the
           ratio's roofline ceiling: HF's time over the least time any
           float32 implementation could take here
           (`bench_roofline.decode_roofline`, from the f32 matmul FLOP/s and
           XLA's read bytes/s over an array as large as the weights, both
           measured in our decode worker), an upper bound from measured
           rates, not a profile of our code; and `ours_vs_roofline`, the
           fraction of that speed we reach;
  train    SFT forward + backward + AdamW at 8 x 256: tokens/s, model FLOP/s,
           MFU against a dense matmul measured in the same process on the same
           dtype path; the PyTorch eager step for the ratio;
  grpo     one step of 4 prompts x 4 samples x 128 tokens, a code reward,
           beta 0.04 (reference pass included), split into generate /
           reference / reward / update; TRL `GRPOTrainer` for the ratio;
           its roofline ceiling likewise (`bench_roofline.grpo_roofline`,
           from the matmul FLOP/s in the step's compute dtype and the read
           bytes/s over its weights, measured in our GRPO worker);
  scaling  decode time per token at 64..512 new tokens; train tokens/s at
           sequence 128/256/512;

each with its peak RSS. Every (section, framework, model) runs in its own
worker process (`--worker`), so peak RSS is per section and the frameworks'
thread pools never compete. The output is a readable table
(`bench_table.py`) followed by one JSON object on the last line (also
written to `--out`), whose `targets` are checked by `bench_targets.py`.
torch, transformers and trl are optional (`pip install -e .[bench]`): when
missing, the baselines are reported as skipped and ours still run.

Timing: a first call (compile + run; reported as compile time; train steps
get one more warm-up call, see `bench_setup.TRAIN_WARMUP`), then several
repetitions, median reported, each ending in `block_until_ready` or a host
transfer. torch gets as many threads as XLA's CPU client uses. Our workers
call `host_memory.reuse_freed_memory()` first, as `rlcs_jax.main` does; the
baselines' workers keep glibc's default malloc unless `--baseline-malloc
reuse` gives them the same settings.

The GRPO step drives the real trainer (`trainers/grpo.GRPOTrainer`:
`rollout` then `train_step`) with TRL-aligned settings, fixed-length
rollouts (no stop token) and raw-text prompts on both sides.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import traceback
from typing import Any, Sequence

from experiments import bench_roofline
from experiments import bench_setup as bs
from experiments import bench_table
from experiments import bench_targets
from rlcs_jax import host_memory

SECTIONS = ("decode", "train", "grpo", "scaling")
_RESULT_PREFIX = "BENCH_RESULT "


# ----------------------------------------------------------------------------
# Workers.


def _run_job(job: dict) -> dict:
  """Runs one measurement in this process (called inside a worker)."""
  st = bs.settings(job["quick"], job.get("models"))
  if job["framework"] == "ours":
    from experiments import bench_jax  # pylint: disable=g-import-not-at-top

    if job["section"] == "export":
      return bench_jax.export(job["model"], job["hf_dir"])
    # Train and GRPO jobs carry a compute dtype, train-scaling jobs a length.
    extra = {k: job[k] for k in ("dtype", "seq") if k in job}
    return bench_jax.JOBS[job["section"]](job["model"], st, **extra)
  from experiments import bench_torch  # pylint: disable=g-import-not-at-top

  if job["section"] == "train":
    return bench_torch.run_train(
        job["hf_dir"], st, job["flops_per_token"], job["dtype"]
    )
  if job["section"] == "grpo":
    return bench_torch.run_grpo(
        job["hf_dir"], st, job["tokenizer_source"], job["dtype"]
    )
  return bench_torch.JOBS[job["section"]](job["hf_dir"], st)


def _worker_main(job_json: str) -> int:
  job = json.loads(job_json)
  if job["framework"] == "ours" or job.get("reuse_freed_memory"):
    host_memory.reuse_freed_memory()  # As `rlcs_jax.main` does.
  try:
    result = _run_job(job)
  except Exception:  # pylint: disable=broad-except
    result = {"error": traceback.format_exc(limit=8)[-3000:]}
  print(_RESULT_PREFIX + json.dumps(result), flush=True)
  return 0


def _spawn(job: dict, timeout: float) -> dict:
  """Runs `job` in a fresh interpreter; returns its result dict."""
  cmd = [sys.executable, "-m", "experiments.bench", "--worker", json.dumps(job)]
  env = dict(
      os.environ,
      TF_CPP_MIN_LOG_LEVEL="3",
      TOKENIZERS_PARALLELISM="0",
      HF_HUB_OFFLINE="1",
      TRANSFORMERS_VERBOSITY="error",
  )
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join(
      [root] + [p for p in [env.get("PYTHONPATH")] if p]
  )
  try:
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
  except subprocess.TimeoutExpired:
    return {"error": f"timed out after {timeout:.0f} s"}
  for line in reversed(proc.stdout.splitlines()):
    if line.startswith(_RESULT_PREFIX):
      return json.loads(line[len(_RESULT_PREFIX) :])
  return {
      "error": f"worker exited with {proc.returncode}: "
      f"{proc.stderr[-3000:]}"
  }


# ----------------------------------------------------------------------------
# Orchestration.


def _ratio(ours: dict, theirs: dict, key: str) -> float | None:
  if not ours or not theirs or key not in ours or key not in theirs:
    return None
  return ours[key] / theirs[key]


def _agreement(a: Sequence[int], b: Sequence[int]) -> float:
  """Fraction of a row's greedy tokens equal before the first divergence."""
  n = 0
  for x, y in zip(a, b):
    if x != y:
      break
    n += 1
  return n / max(len(a), 1)


def _machine() -> dict:
  model = platform.processor()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          model = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  mem = None
  try:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
  except (ValueError, OSError, AttributeError):
    pass
  return {
      "cpu": model,
      "cores": bs.num_cores(),
      "ram_gib": None if mem is None else round(mem, 1),
      "python": platform.python_version(),
      "platform": platform.platform(),
  }


def _versions() -> dict:
  out = {}
  for name in (
      "jax",
      "jaxlib",
      "flax",
      "optax",
      "torch",
      "transformers",
      "trl",
  ):
    try:
      from importlib import metadata  # pylint: disable=g-import-not-at-top

      out[name] = metadata.version(name)
    except Exception:  # pylint: disable=broad-except
      out[name] = None
  return out


def _baselines_missing() -> str | None:
  missing = [
      n
      for n in ("torch", "transformers", "trl")
      if importlib.util.find_spec(n) is None
  ]
  if missing:
    return (
        f"{', '.join(missing)} not installed (pip install -e .[bench]); "
        "baselines skipped"
    )
  return None


def run(
    *,
    quick: bool = False,
    sections: Sequence[str] = SECTIONS,
    models: Sequence[str] | None = None,
    baselines: bool = True,
    baseline_malloc: str = "default",
    in_process: bool = False,
    workdir: str | None = None,
    timeout: float = 3600.0,
    log=print,
) -> dict:
  """Runs the benchmark; returns the result dict (see the module docstring).

  Args:
    quick: small shapes on the tiny model (a smoke run).
    sections: which of `SECTIONS` to run.
    models: run every section on these models instead (see
      `bench_setup.settings`).
    baselines: also run HF / PyTorch / TRL (when installed).
    baseline_malloc: "default" (glibc as it comes) or "reuse" (the baselines'
      workers also call `host_memory.reuse_freed_memory()`, as ours do).
    in_process: run our jobs in this process (no per-section RSS; used by
      the unit test); baselines always run in workers.
    workdir: where exported checkpoints go (default: a temporary directory).
    timeout: per-worker timeout in seconds.
    log: progress printer.
  """
  st = bs.settings(quick, models)
  result: dict[str, Any] = {
      "meta": {
          "date": datetime.datetime.now().isoformat(timespec="seconds"),
          "quick": quick,
          "machine": _machine(),
          "versions": _versions(),
          "settings": st.__dict__,
          "note": "CPU figures; see experiments/bench.py",
          "malloc": {
              "ours": "reuse_freed_memory (rlcs_jax/host_memory.py)",
              "baselines": baseline_malloc,
          },
      },
      "skipped": {},
  }
  skip_reason = None if baselines else "baselines disabled (--no-baselines)"
  skip_reason = skip_reason or _baselines_missing()
  if skip_reason:
    result["skipped"]["baselines"] = skip_reason

  def ours(section, model, **extra):
    job = dict(
        framework="ours",
        section=section,
        model=model,
        quick=quick,
        models=models,
        **extra,
    )
    log(f"[bench] ours {section} {model}")
    if in_process:
      try:
        return _run_job(job)
      except Exception:  # pylint: disable=broad-except
        return {"error": traceback.format_exc(limit=8)[-3000:]}
    return _spawn(job, timeout)

  def theirs(section, model, **extra):
    if skip_reason:
      return None
    job = dict(
        framework="torch",
        section=section,
        model=model,
        quick=quick,
        models=models,
        hf_dir=hf_dirs[model],
        reuse_freed_memory=baseline_malloc == "reuse",
        **extra,
    )
    log(f"[bench] baseline {section} {model}")
    return _spawn(job, timeout)

  tmp = None
  if workdir is None:
    tmp = tempfile.TemporaryDirectory(prefix="rlcs_bench_")
    workdir = tmp.name
  hf_dirs: dict[str, str] = {}
  try:
    if not skip_reason:
      needed = set()
      if "decode" in sections:
        needed |= set(st.decode_models)
      if "train" in sections:
        needed |= set(st.train_models)
      if "grpo" in sections:
        needed |= {m for m in st.grpo_models if m == "smollm2"}
      for model in sorted(needed):
        hf_dirs[model] = os.path.join(workdir, f"hf_{model}")
        exported = ours("export", model, hf_dir=hf_dirs[model])
        if "error" in exported:
          result["skipped"][f"export_{model}"] = exported["error"]

    if "decode" in sections:
      result["decode"] = {}
      for model in st.decode_models:
        entry = {"ours": ours("decode", model), "hf": theirs("decode", model)}
        entry["ratio"] = {
            str(b): _ratio(
                (entry["ours"] or {}).get(str(b)),
                (entry["hf"] or {}).get(str(b)),
                "tokens_per_s",
            )
            for b in st.decode_batches
        }
        rows = {
            who: [
                entry[who][str(b)].pop("first_row_tokens")
                for b in st.decode_batches
            ]
            for who in ("ours", "hf")
            if entry[who] and "error" not in entry[who]
        }
        if len(rows) == 2:
          # Same weights => same greedy tokens, up to float rounding ties.
          entry["greedy_prefix_agreement"] = bs.median(
              [_agreement(o, h) for o, h in zip(rows["ours"], rows["hf"])]
          )
        bench_roofline.add_decode_ceilings(entry, st)
        result["decode"][model] = entry

    if "train" in sections:
      result["train"] = {}
      for model, dtype in itertools.product(st.train_models, st.dtypes):
        entry = {"ours": ours("train", model, dtype=dtype)}
        flops = None
        if "error" not in entry["ours"]:
          flops = (
              entry["ours"]["model_flops_per_s"] / entry["ours"]["tokens_per_s"]
          )
        entry["torch"] = theirs(
            "train", model, flops_per_token=flops, dtype=dtype
        )
        entry["ratio"] = _ratio(entry["ours"], entry["torch"], "tokens_per_s")
        result["train"][bs.key(model, dtype)] = entry

    if "grpo" in sections:
      result["grpo"] = {}
      for model, dtype in itertools.product(st.grpo_models, st.dtypes):
        entry = {"ours": ours("grpo", model, dtype=dtype), "trl": None}
        if model != "smollm2":
          result["skipped"][f"grpo_{model}_trl"] = (
              f"the {model} model has no Hugging Face tokenizer; TRL runs "
              "on SmolLM2 only"
          )
        else:
          from rlcs_jax.model import smollm2  # pylint: disable=g-import-not-at-top

          gguf = smollm2.find_gguf(smollm2.default_cache_dir())
          entry["trl"] = theirs(
              "grpo",
              model,
              tokenizer_source={
                  "pretrained_model_name_or_path": os.path.dirname(gguf),
                  "gguf_file": os.path.basename(gguf),
              },
              dtype=dtype,
          )
        # Speed-up: TRL's step time over ours.
        entry["ratio"] = _ratio(entry["trl"], entry["ours"], "step_s")
        bench_roofline.add_grpo_ceiling(entry)
        result["grpo"][bs.key(model, dtype)] = entry

    if "scaling" in sections:
      result["scaling"] = {
          "decode": {
              m: ours("scaling_decode", m) for m in st.scaling_decode_models
          },
          "train": {
              m: _scaling_train(
                  {L: ours("scaling_train", m, seq=L) for L in st.scaling_seqs}
              )
              for m in st.scaling_train_models
          },
      }
  finally:
    if tmp is not None:
      tmp.cleanup()
  result["targets"] = bench_targets.check(result)
  return result


def _scaling_train(points: dict) -> dict:
  """One model's train-scaling entry from its per-length workers' results:
  {"<L>": point, ..., "peak_rss_mb": the largest}, or the first error."""
  for point in points.values():
    if "error" in point:
      return point
  out = {str(L): point for L, point in points.items()}
  out["peak_rss_mb"] = max(p["peak_rss_mb"] for p in points.values())
  return out


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
      "--quick", action="store_true", help="small shapes, tiny model only"
  )
  parser.add_argument("--out", help="also write the JSON object here")
  parser.add_argument(
      "--sections",
      default=",".join(SECTIONS),
      help=f"comma-separated subset of {SECTIONS}",
  )
  parser.add_argument(
      "--models",
      default="",
      help="comma-separated models replacing each section's (tiny, smollm2)",
  )
  parser.add_argument(
      "--no-baselines", action="store_true", help="skip HF / PyTorch / TRL"
  )
  parser.add_argument(
      "--baseline-malloc",
      choices=("default", "reuse"),
      default="default",
      help="glibc malloc of the baselines' workers: as it comes, or with "
      "the settings ours use (rlcs_jax/host_memory.py)",
  )
  parser.add_argument(
      "--in-process",
      action="store_true",
      help="run our jobs in this process (no per-section RSS)",
  )
  parser.add_argument("--workdir", help="keep exported checkpoints here")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    return _worker_main(args.worker)
  sections = [s for s in args.sections.split(",") if s]
  unknown = set(sections) - set(SECTIONS)
  if unknown:
    parser.error(
        f"unknown sections {sorted(unknown)}; choose from " f"{SECTIONS}"
    )
  result = run(
      quick=args.quick,
      sections=sections,
      models=[m for m in args.models.split(",") if m] or None,
      baselines=not args.no_baselines,
      baseline_malloc=args.baseline_malloc,
      in_process=args.in_process,
      workdir=args.workdir,
      log=lambda s: print(s, file=sys.stderr, flush=True),
  )
  print(bench_table.table(result))
  print(json.dumps(result))
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
