"""Benchmark targets: the thresholds one run's results are checked against.

Owns `TARGETS` (decode ratios against HF `generate`, train ratios and MFU,
GRPO speed-ups against TRL for every model and compute dtype of the full
run, decode scaling) and `check`, which evaluates every target whose value
a benchmark result holds. A decode or GRPO ratio's check also carries the
ratio's roofline ceiling (`bench_roofline.decode_roofline`, `grpo_roofline`;
None when the run has none): a target above its ceiling is out of reach on
the measured machine.
"""

from __future__ import annotations

from typing import Any, Sequence

from experiments import bench_setup as bs

# Result keys of the full run's train and GRPO entries ("tiny", "tiny bf16",
# ...): one per model and compute dtype.
_TRAIN_KEYS = tuple(
    bs.key(m, d) for d in bs.FULL.dtypes for m in bs.FULL.train_models
)
_GRPO_KEYS = tuple(
    bs.key(m, d) for d in bs.FULL.dtypes for m in bs.FULL.grpo_models
)

# (target, path into the result, comparison, threshold): the issue's
# targets, checked on the ratios of one run.
TARGETS = (
    *(
        (f"decode {m} b{b} ours/HF", ("decode", m, "ratio", b), ">=", t)
        for m, b, t in (
            ("smollm2", "1", 1.5),
            ("smollm2", "8", 3.0),
            ("smollm2", "32", 3.0),
            ("tiny", "1", 5.0),
            ("tiny", "8", 5.0),
            ("tiny", "32", 5.0),
        )
    ),
    # Train and GRPO, float32 and bf16 (both sides in the same precision,
    # see `Settings.dtypes`).
    *(
        (f"train {k} ours/torch", ("train", k, "ratio"), ">=", 1.0)
        for k in _TRAIN_KEYS
    ),
    *(
        (
            f"train {k} MFU vs matmul",
            ("train", k, "ours", "mfu_vs_matmul"),
            ">=",
            0.5,
        )
        for k in _TRAIN_KEYS
    ),
    *(
        (f"grpo {k} ours/TRL", ("grpo", k, "ratio"), ">=", 3.0)
        for k in _GRPO_KEYS
    ),
    *(
        (
            f"decode ms/token max/min {m}",
            ("scaling", "decode", m, "max_over_min"),
            "<=",
            1.2,
        )
        for m in ("tiny", "smollm2")
    ),
)


def _get(tree: Any, path: Sequence[str]) -> Any:
  for key in path:
    if not isinstance(tree, dict) or key not in tree:
      return None
    tree = tree[key]
  return tree


def check(result: dict) -> list[dict]:
  """Each target whose value `result` holds: its value and whether it is met.

  Decode and GRPO ratio targets also get `ceiling`, the best ratio
  reachable on the measured machine (None when unknown).
  """
  out = []
  for name, path, op, threshold in TARGETS:
    value = _get(result, path)
    if not isinstance(value, (int, float)):
      continue
    met = value >= threshold if op == ">=" else value <= threshold
    entry = {
        "target": name,
        "value": value,
        "threshold": f"{op} {threshold}",
        "met": bool(met),
    }
    if path[0] == "decode" and path[2] == "ratio":
      entry["ceiling"] = _get(result, ("decode", path[1], "ceiling", path[3]))
    elif path[0] == "grpo" and path[2] == "ratio":
      entry["ceiling"] = _get(result, ("grpo", path[1], "ceiling"))
    out.append(entry)
  return out
