"""Sweep launcher: runs every point of a config file's `sweep(add, arg)`.

  python -m experiments.launch --config configs/rlcs_tiny.py[:arg] \
      --root runs/rlcs_sweep [--parallel N] [--dry_run]

Each `add(**{"dotted.key": value})` in the config file's `sweep` is one point.
Every key (and the value's type) is checked against the config before
anything starts. A point runs as

  python -m rlcs_jax.main --config FILE[:arg] --config.k=v ... \
      --workdir ROOT/<point name>

with stdout and stderr in `ROOT/<name>/launch.log`; up to `--parallel` points
run at once (processes on this machine: use 1 on a TPU/GPU host, whose
devices one process owns). The point name is the overrides themselves
(`optim.lr=0.001`), made filesystem-safe, with a hash suffix only when long.

Resuming: a point that finished writes `launch_done.json` in its workdir and
is skipped by later launches; an interrupted or failed one is rerun on the
same workdir, where `rlcs_jax.main` skips finished stages and resumes the
interrupted one from its checkpoint. A failed point is reported (exit code
and the last lines of its log) without stopping the others; the launcher
exits with status 1 if any point failed or was interrupted.

At the end `ROOT/summary.csv` (one row per point: overrides, status, the
final value of every metric of every stage in `metrics.jsonl`, and every
`*results*.json` in the workdir flattened) and `ROOT/summary.md` are written.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any, Callable

from absl import app
from absl import flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CONFIG = flags.DEFINE_string(
    "config", None, "Config file with a sweep(add, arg): path.py[:arg]."
)
_ROOT = flags.DEFINE_string("root", None, "Directory of the point workdirs.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Points run at once.")
_DRY_RUN = flags.DEFINE_bool(
    "dry_run", False, "Validate and print the commands; run nothing."
)

DONE_FILE = "launch_done.json"
LOG_FILE = "launch.log"
LOG_TAIL_LINES = 30
# main.py catches a preemption and exits 0 after checkpointing; this line in
# the log marks such a run as interrupted, not finished.
_PREEMPTED_MARK = "after saving a checkpoint; rerun the same command to resume"
# Workdir folders that never hold result files (skipped when searching).
_NO_RESULTS_DIRS = {"checkpoints", "data", "tb", "tokenizer", "final_params"}


class SweepError(ValueError):
  """The sweep definition or one of its points is invalid."""


@dataclasses.dataclass
class Point:
  """One run of the sweep and what became of it."""

  name: str
  overrides: dict[str, Any]
  workdir: str
  command: list[str]
  status: str = "pending"  # ok | skipped | failed | interrupted | not_run
  exit_code: int | None = None
  seconds: float | None = None
  log_tail: str = ""


# ----------------------------------------------------------------------------
# Expanding and validating the sweep.


def load_config_module(path: str):
  """Imports a config file as a module (configs import `configs.common`)."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"config file not found: {path}")
  if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
  spec = importlib.util.spec_from_file_location("_sweep_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def format_value(value: Any) -> str:
  """A value as `--config.k=<text>` expects it (floats round-trip)."""
  if isinstance(value, float):
    return repr(value)
  if isinstance(value, (tuple, list)):
    return repr(tuple(value))
  return str(value)


def point_name(overrides: dict[str, Any], max_len: int = 100) -> str:
  """Stable, filesystem-safe name: `k=v,k=v`, hashed suffix when too long."""
  text = ",".join(f"{k}={format_value(v)}" for k, v in overrides.items())
  safe = re.sub(r"[^A-Za-z0-9._=,+-]", "_", text) or "default"
  if len(safe) <= max_len and safe == text:
    return safe
  digest = hashlib.sha1(
      json.dumps(overrides, sort_keys=True, default=repr).encode()
  ).hexdigest()[:8]
  return f"{safe[:max_len]}-{digest}"


def expand_sweep(module, arg: str | None) -> list[dict[str, Any]]:
  """Calls `sweep(add, arg)`; returns one override dict per `add` call."""
  sweep = getattr(module, "sweep", None)
  if sweep is None:
    raise SweepError("the config file defines no sweep(add, arg=None)")
  points: list[dict[str, Any]] = []
  sweep(lambda **kv: points.append(dict(kv)), arg or None)
  if not points:
    raise SweepError("sweep(add, arg) added no points")
  return points


def _set_dotted(config, key: str, value: Any) -> None:
  *parents, leaf = key.split(".")
  for part in parents:
    config = config[part]
  config[leaf] = value


def validate(config, points: list[dict[str, Any]]) -> None:
  """Every key exists and every value has the key's type; else SweepError."""
  import copy  # pylint: disable=g-import-not-at-top

  from rlcs_jax import config_keys  # pylint: disable=g-import-not-at-top

  errors, names = [], {}
  for i, overrides in enumerate(points):
    trial = copy.deepcopy(config)
    for key, value in overrides.items():
      try:
        config_keys.check_key(config, key)
        _set_dotted(trial, key, value)
      except (config_keys.UnknownConfigKeyError, TypeError, KeyError) as e:
        errors.append(f"point {i} ({overrides}): {e}")
    name = point_name(overrides)
    if name in names:
      errors.append(f"point {i} repeats point {names[name]}: {overrides}")
    names[name] = i
  if errors:
    raise SweepError("invalid sweep:\n  " + "\n  ".join(errors))


def make_points(spec: str, root: str) -> list[Point]:
  """Loads, expands and validates the sweep of `path.py[:arg]`."""
  path, _, arg = spec.partition(":")
  path = os.path.abspath(path)
  module = load_config_module(path)
  config = module.get_config(arg) if arg else module.get_config()
  overrides_list = expand_sweep(module, arg)
  validate(config, overrides_list)
  config_arg = path + (f":{arg}" if arg else "")
  points = []
  for overrides in overrides_list:
    name = point_name(overrides)
    workdir = os.path.join(os.path.abspath(root), name)
    command = [sys.executable, "-m", "rlcs_jax.main", "--config", config_arg]
    command += [f"--config.{k}={format_value(v)}" for k, v in overrides.items()]
    command += ["--workdir", workdir]
    points.append(Point(name, overrides, workdir, command))
  return points


# ----------------------------------------------------------------------------
# Running.


def _read_tail(path: str, offset: int = 0, lines: int = LOG_TAIL_LINES) -> str:
  if not os.path.exists(path):
    return ""
  with open(path, encoding="utf-8", errors="replace") as f:
    f.seek(offset)
    return "".join(f.readlines()[-lines:])


def is_done(point: Point) -> bool:
  return os.path.exists(os.path.join(point.workdir, DONE_FILE))


def _child_env() -> dict[str, str]:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (_REPO, env.get("PYTHONPATH", "")) if p
  )
  return env


class _Running:
  """A started point: its process, open log and where this attempt began."""

  def __init__(self, point: Point):
    os.makedirs(point.workdir, exist_ok=True)
    self.point = point
    self.log_path = os.path.join(point.workdir, LOG_FILE)
    self.log = open(self.log_path, "a", encoding="utf-8")
    self.log.write(
        f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} "
        f"{' '.join(point.command)}\n"
    )
    self.log.flush()
    self.offset = self.log.tell()
    self.start = time.monotonic()
    self.proc = subprocess.Popen(
        point.command,
        stdout=self.log,
        stderr=subprocess.STDOUT,
        env=_child_env(),
    )

  def finish(self, interrupted: bool) -> None:
    """Records the outcome; only a clean, complete run gets the marker."""
    p = self.point
    p.exit_code = self.proc.wait()
    self.log.close()
    p.seconds = time.monotonic() - self.start
    tail = _read_tail(self.log_path, self.offset)
    stopped = interrupted or _PREEMPTED_MARK in tail
    if p.exit_code == 0 and not stopped:
      p.status = "ok"
      with open(os.path.join(p.workdir, DONE_FILE), "w") as f:
        json.dump(
            dict(command=p.command, overrides=p.overrides, seconds=p.seconds),
            f,
            indent=2,
            default=repr,
        )
      return
    # Killed by our stop request (or preempted) vs. crashed on its own.
    by_signal = p.exit_code in (
        0,
        130,
        -signal.SIGINT,
        -signal.SIGTERM,
        -signal.SIGKILL,
    )
    p.status = "interrupted" if stopped and by_signal else "failed"
    p.log_tail = tail


def run_points(
    points: list[Point],
    parallel: int,
    echo: Callable[[str], None] = print,
    grace_seconds: float = 120.0,
) -> bool:
  """Runs the unfinished points, `parallel` at a time; False if interrupted.

  Ctrl-C (or SIGTERM) asks the running points to checkpoint and stop (main
  handles SIGTERM at the next step boundary), waits for them, and returns.
  """
  todo = []
  for p in points:
    if is_done(p):
      p.status = "skipped"
      with open(os.path.join(p.workdir, DONE_FILE)) as f:
        done = json.load(f)
      p.seconds = done.get("seconds")
      # [1:]: the same run under another python path is still the same.
      if done.get("command", [])[1:] != p.command[1:]:
        echo(
            f"[skip] {p.name}: finished earlier with a different command "
            f"(use a new --root to rerun): {' '.join(done['command'])}"
        )
      else:
        echo(f"[skip] {p.name}: finished earlier")
    else:
      todo.append(p)
  running: list[_Running] = []
  previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
  try:  # SIGTERM to the launcher stops the points like Ctrl-C does.
    while todo or running:
      while todo and len(running) < max(parallel, 1):
        p = todo.pop(0)
        echo(f"[start] {p.name} -> {p.workdir}")
        running.append(_Running(p))
      time.sleep(0.2)
      for r in [r for r in running if r.proc.poll() is not None]:
        running.remove(r)
        r.finish(interrupted=False)
        _echo_outcome(r.point, echo)
    return True
  except KeyboardInterrupt:
    echo(f"[interrupt] stopping {len(running)} running point(s)")
    for r in running:
      if r.proc.poll() is None:
        r.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for r in running:
      try:
        r.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
      except subprocess.TimeoutExpired:
        r.proc.kill()
      r.finish(interrupted=True)
      _echo_outcome(r.point, echo)
    for p in todo:
      p.status = "not_run"
    return False
  finally:
    signal.signal(signal.SIGTERM, previous)


def _echo_outcome(p: Point, echo: Callable[[str], None]) -> None:
  echo(f"[{p.status}] {p.name} (exit {p.exit_code}, {p.seconds:.0f}s)")
  if p.status == "failed":
    echo("  " + "\n  ".join(p.log_tail.rstrip().splitlines()[-10:]))


# ----------------------------------------------------------------------------
# Summary.


def flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
  """Nested dicts/lists -> `prefix.key` scalars."""
  if isinstance(value, dict):
    for k, v in value.items():
      flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
  elif isinstance(value, (list, tuple)):
    for i, v in enumerate(value):
      flatten(v, f"{prefix}.{i}", out)
  else:
    out[prefix] = value


def final_metrics(workdir: str) -> dict[str, Any]:
  """`stage/metric` -> last value in metrics.jsonl; plus results files."""
  out: dict[str, Any] = {}
  path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      for line in f:
        try:
          row = json.loads(line)
        except json.JSONDecodeError:
          continue  # A line cut by a kill.
        stage = row.get("stage", "train")
        for k, v in row.items():
          if k != "stage":
            out[f"{stage}/{k}"] = v
  for dirpath, dirnames, filenames in os.walk(workdir):
    dirnames[:] = sorted(d for d in dirnames if d not in _NO_RESULTS_DIRS)
    for fname in sorted(filenames):
      if "results" in fname and fname.endswith(".json"):
        rel = os.path.relpath(os.path.join(dirpath, fname), workdir)
        try:
          with open(os.path.join(dirpath, fname)) as f:
            flatten(json.load(f), rel[: -len(".json")], out)
        except (OSError, json.JSONDecodeError):
          continue
  return out


def summary_rows(points: list[Point]) -> tuple[list[str], list[dict]]:
  """Columns and one row per point (overrides first, metrics sorted)."""
  keys = list(dict.fromkeys(k for p in points for k in p.overrides))
  rows, metric_keys = [], {}
  for p in points:
    row = {"point": p.name, **{k: p.overrides.get(k, "") for k in keys}}
    row.update(
        status=p.status,
        exit_code="" if p.exit_code is None else p.exit_code,
        seconds="" if p.seconds is None else round(p.seconds, 1),
        workdir=p.workdir,
    )
    metrics = final_metrics(p.workdir) if os.path.isdir(p.workdir) else {}
    metric_keys.update(dict.fromkeys(metrics))
    row.update(metrics)
    rows.append(row)
  columns = (
      ["point"]
      + keys
      + ["status", "exit_code", "seconds", "workdir"]
      + sorted(metric_keys)
  )
  return columns, rows


def _cell(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.4g}" if math.isfinite(value) else str(value)
  return str(value).replace("|", "\\|").replace("\n", " ")


def write_summary(root: str, spec: str, points: list[Point]) -> str:
  """Writes summary.csv and summary.md; returns the markdown."""
  columns, rows = summary_rows(points)
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, "summary.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
  head = columns[: columns.index("workdir")]
  lines = [f"# Sweep `{spec}`", "", f"{len(points)} points in `{root}`.", ""]
  lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  lines += [
      "| " + " | ".join(_cell(r.get(c, "")) for c in head) + " |" for r in rows
  ]
  metrics = columns[columns.index("workdir") + 1 :]
  numeric = [
      m
      for m in metrics
      if any(
          isinstance(r.get(m), (int, float)) and not isinstance(r.get(m), bool)
          for r in rows
      )
  ]
  if numeric:
    lines += [
        "",
        "## Final metrics",
        "",
        "| metric | " + " | ".join(r["point"] for r in rows) + " |",
        "|---|" + "---:|" * len(rows),
    ]
    lines += [
        "| " + m + " | " + " | ".join(_cell(r.get(m, "")) for r in rows) + " |"
        for m in numeric
    ]
  failed = [p for p in points if p.status in ("failed", "interrupted")]
  for p in failed:
    lines += [
        "",
        f"## {p.status}: {p.name} (exit code {p.exit_code})",
        "",
        f"Log: `{os.path.join(p.workdir, LOG_FILE)}`; last lines:",
        "",
        "```",
        p.log_tail.rstrip(),
        "```",
    ]
  text = "\n".join(lines) + "\n"
  with open(os.path.join(root, "summary.md"), "w") as f:
    f.write(text)
  return text


# ----------------------------------------------------------------------------
# CLI.


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _CONFIG.value or not _ROOT.value:
    raise app.UsageError("--config and --root are required")
  try:
    points = make_points(_CONFIG.value, _ROOT.value)
  except (SweepError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if _DRY_RUN.value:
    for p in points:
      status = "done" if is_done(p) else "to run"
      print(f"{p.name} [{status}]\n  {' '.join(p.command)}")
    return 0
  print(f"{len(points)} points, {_PARALLEL.value} at a time, in {_ROOT.value}")
  completed = run_points(points, _PARALLEL.value)
  write_summary(_ROOT.value, _CONFIG.value, points)
  counts = {
      s: sum(p.status == s for p in points)
      for s in ("ok", "skipped", "failed", "interrupted")
  }
  print(f"summary: {os.path.join(_ROOT.value, 'summary.md')} ({counts})")
  if not completed:
    return 130
  return 1 if counts["failed"] or counts["interrupted"] else 0


if __name__ == "__main__":
  app.run(main)
