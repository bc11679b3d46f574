"""Config key checks: every `--config.a.b=v` override must name a real key.

ml_collections already refuses unknown keys on a locked config, but deep in a
traceback; this check runs first and names the key and its nearest valid
neighbours.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from typing import Any, Sequence

import ml_collections


class UnknownConfigKeyError(KeyError):

  def __str__(self):
    return str(self.args[0])


def flat_keys(config: Any, prefix: str = "") -> list[str]:
  """All dotted keys of a (nested) ConfigDict, leaves and sections."""
  keys = []
  for k, v in config.items():
    full = f"{prefix}{k}"
    keys.append(full)
    if isinstance(v, (ml_collections.ConfigDict, dict)):
      keys.extend(flat_keys(v, full + "."))
  return keys


def check_key(config: Any, key: str) -> None:
  """Raises UnknownConfigKeyError with suggestions if `key` is not declared."""
  keys = flat_keys(config)
  if key in keys:
    return
  parent = key.rsplit(".", 1)[0] if "." in key else ""
  siblings = (
      [
          k
          for k in keys
          if (k.startswith(parent + ".") and "." not in k[len(parent) + 1 :])
      ]
      if parent
      else [k for k in keys if "." not in k]
  )
  close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
  hint = f" Did you mean: {', '.join(close)}?" if close else ""
  raise UnknownConfigKeyError(
      f"unknown config key {key!r}.{hint} Valid keys here: "
      f"{', '.join(sorted(siblings)) or '(none)'}"
  )


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """Loads `path.py[:arg]` the way ml_collections' config flag does."""
  path, _, arg = spec.partition(":")
  if not os.path.exists(path):
    raise FileNotFoundError(f"config file not found: {path}")
  module_spec = importlib.util.spec_from_file_location("_rlcs_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def check_overrides(argv: Sequence[str]) -> None:
  """Validates every --config.* override in argv against the config file."""
  spec = None
  overrides = []
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      spec = a.split("=", 1)[1]
    elif a == "--config" and i + 1 < len(argv):
      spec = argv[i + 1]
    elif a.startswith("--config."):
      overrides.append(a[len("--config.") :].split("=", 1)[0])
  if spec is None or not overrides:
    return
  config = load_config_file(spec)
  for key in overrides:
    check_key(config, key)
