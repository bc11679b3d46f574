"""Process settings for the test suite: 8 virtual CPU devices, float32.

Compiled programs are cached on disk for the length of one pytest run (a
fresh, empty directory each run, removed at exit), shared with the
subprocesses the tests start: many tests compile the same tiny-model step
(every `python -m rlcs_jax.main` run, each resumed or rerun trainer), and
XLA compilation is most of their time on CPU. `make test` runs the suite in
two pytest-xdist workers; they inherit the directory from the controller
process, which imports this file first, and a size limit turns on JAX's file
lock around cache reads and writes so one worker never reads an entry the
other is still writing.
"""

import atexit
import os
import shutil
import tempfile

# Must be set before jax initialises its backends.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="rlcs_jax_tests_xla_cache_")
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(8 << 30)

# The slowest test files (each over ~30 s on the 2-core CI machine), started
# first: the two workers then finish together instead of one running a long
# file alone at the end. Only the order of files changes.
_SLOW_FILES = (
    "trainers/pipeline_test.py",
    "multiprocess_test.py",
    "trainers/grpo_test.py",
    "experiments/bench_test.py",
    "experiments/launch_test.py",
    "main_test.py",
    "reliability/numerics_test.py",
    "trainers/rlmr_test.py",
)


def pytest_collection_modifyitems(items):
  def rank(item):
    path = item.nodeid.split("::")[0]
    for i, name in enumerate(_SLOW_FILES):
      if path == f"tests/{name}":
        return i
    return len(_SLOW_FILES)

  items.sort(key=rank)  # Stable: tests keep their order within a file.
