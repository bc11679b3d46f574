"""Every config file loads, is locked, declares no new keys, sweeps over real
keys; and every `config.a.b` chain the package reads is declared."""

import ast
import glob
import os

import ml_collections
import pytest

from configs import common
from rlcs_jax import config_keys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(
    p
    for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
    if not os.path.basename(p).startswith(("_", "common"))
)
BASE_KEYS = set(config_keys.flat_keys(common.base_config()))


def _load_module(path):
  import importlib.util  # pylint: disable=g-import-not-at-top

  spec = importlib.util.spec_from_file_location(
      "_config_" + os.path.basename(path)[:-3], path
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_config_files_found():
  names = {os.path.basename(p) for p in CONFIG_FILES}
  assert {"tiny.py", "rlmr_tiny.py", "rlmr_smollm2.py", "smollm2.py"} <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
@pytest.mark.parametrize("arg", [None, "test"])
def test_config_loads_locked_without_new_keys(path, arg):
  spec = path if arg is None else f"{path}:{arg}"
  c = config_keys.load_config_file(spec)  # As main's override check does.
  assert isinstance(c, ml_collections.ConfigDict)
  assert c.is_locked, f"{spec}: get_config must lock the config"
  with pytest.raises(AttributeError):
    c.no_such_key_xyz = 1
  new = set(config_keys.flat_keys(c)) - BASE_KEYS
  assert not new, f"{spec} adds keys {sorted(new)}; declare them in common.py"
  c.to_json_best_effort()  # Saved as config.json by every job.


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_sweeps_override_real_keys(path):
  module = _load_module(path)
  if not hasattr(module, "sweep"):
    pytest.skip("no sweep")
  runs = []
  module.sweep(lambda **kw: runs.append(kw))
  assert runs, "sweep added no runs"
  base = module.get_config()
  for overrides in runs:
    for key in overrides:
      config_keys.check_key(base, key)
    c = base.copy_and_resolve_references()
    c.update_from_flattened_dict(overrides)  # Type-checked on a locked dict.
    for key, value in overrides.items():
      node = c
      for part in key.split("."):
        node = node[part]
      assert node == value


def test_rlmr_tiny_sweeps_the_rules():
  module = _load_module(os.path.join(ROOT, "configs", "rlmr_tiny.py"))
  runs = []
  module.sweep(lambda **kw: runs.append(kw))
  assert [r["rlmr.rule"] for r in runs] == [
      "rlmr",
      "single_writing",
      "single_constraint",
      "fixed_mix",
      "floor",
  ]


# ---------------------------------------------------------------------------
# Keys read by the code.

_CONFIG_METHODS = set(dir(ml_collections.ConfigDict))


def _chains(tree):
  """Maximal attribute chains after a `config` name or `.config` attribute,
  e.g. `run.config.sft.steps` -> ("sft", "steps")."""
  inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
  for node in ast.walk(tree):
    if not isinstance(node, ast.Attribute) or id(node) in inner:
      continue
    names = []
    base = node
    while isinstance(base, ast.Attribute):
      names.append(base.attr)
      base = base.value
    if not isinstance(base, ast.Name):
      continue
    names = [base.id] + names[::-1]
    if names[0] == "jax":  # jax.config.update(...)
      continue
    if "config" in names[:-1]:
      yield node.lineno, tuple(names[names.index("config") + 1 :])


def _missing(keys):
  node = common.base_config()
  for i, k in enumerate(keys):
    if not isinstance(node, ml_collections.ConfigDict):
      return None  # A leaf's own attribute (e.g. a tuple's).
    if k in node:
      node = node[k]
    elif k in _CONFIG_METHODS:
      return None  # config.items(), config.sft.to_dict(), ...
    else:
      return ".".join(keys[: i + 1])
  return None


def test_every_config_chain_in_the_package_is_declared():
  problems = []
  for path in sorted(
      glob.glob(os.path.join(ROOT, "rlcs_jax", "**", "*.py"), recursive=True)
  ):
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read(), path)
    for lineno, keys in _chains(tree):
      if keys and keys[0] not in common.base_config():
        continue  # Not a ConfigDict (e.g. an HF config.json dict).
      missing = _missing(keys)
      if missing:
        problems.append(
            f"{os.path.relpath(path, ROOT)}:{lineno}: " f"config.{missing}"
        )
  assert not problems, "undeclared config keys:\n" + "\n".join(problems)


def test_chain_finder_sees_nested_reads():
  tree = ast.parse(
      "run.config.rlmr.delta\nconfig.eval.nope\njax.config.x\n"
      "config.data.files.items()\n"
  )
  chains = [k for _, k in _chains(tree)]
  assert ("rlmr", "delta") in chains and ("eval", "nope") in chains
  assert _missing(("eval", "nope")) == "eval.nope"
  assert _missing(("rlmr", "delta")) is None
  assert _missing(("data", "files", "items")) is None
  assert all(c[0] != "x" for c in chains)
