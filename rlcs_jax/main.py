"""Entry point: `python -m rlcs_jax.main --config configs/x.py --workdir DIR`.

Parses flags, initialises multi-process JAX when launched as several
processes, logs and saves the config, and dispatches on `config.job` through
an explicit table. All logic lives in the trainers.
"""

import logging as std_logging
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from rlcs_jax import host_memory

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/tiny.py[:arg].", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    None,
    "Call jax.distributed.initialize(); default: when JAX_COORDINATOR_ADDRESS"
    " is set. JAX_NUM_PROCESSES and JAX_PROCESS_ID, when set, are passed to"
    " it; otherwise JAX detects them from the cluster (TPU pods, SLURM...).",
)

# Launch variables for `jax.distributed.initialize` (JAX itself reads only
# the coordinator address; the other two are ours, for plain multi-process
# launches without a cluster manager).
_DISTRIBUTED_ENV = {
    "coordinator_address": ("JAX_COORDINATOR_ADDRESS", str),
    "num_processes": ("JAX_NUM_PROCESSES", int),
    "process_id": ("JAX_PROCESS_ID", int),
}


def _initialize_distributed(jax) -> None:
  """`jax.distributed.initialize` with the launch variables that are set."""
  kwargs = {
      name: cast(os.environ[var])
      for name, (var, cast) in _DISTRIBUTED_ENV.items()
      if os.environ.get(var)
  }
  logging.info("jax.distributed.initialize(%s)", kwargs)
  jax.distributed.initialize(**kwargs)


def _jobs():
  # Imported lazily so `--help` stays fast.
  from rlcs_jax.trainers import jobs

  return jobs.JOBS


class _QuietLibraries(std_logging.Filter):
  """Drops INFO chatter of orbax/tensorstore/tfds; warnings still pass."""

  def filter(self, record):
    noisy = any(
        k in record.pathname for k in ("orbax", "tensorflow_datasets", "etils")
    )
    return record.levelno >= std_logging.WARNING or not noisy


def main(argv):
  del argv
  logging.get_absl_handler().addFilter(_QuietLibraries())
  import jax

  if _DISTRIBUTED.value or (
      _DISTRIBUTED.value is None and "JAX_COORDINATOR_ADDRESS" in os.environ
  ):
    _initialize_distributed(jax)
  config = _CONFIG.value
  workdir = _WORKDIR.value
  if config is None or workdir is None:
    raise app.UsageError("--config and --workdir are required")
  jobs = _jobs()
  if config.job not in jobs:
    raise app.UsageError(
        f"unknown config.job={config.job!r}; expected one of " f"{sorted(jobs)}"
    )
  logging.info(
      "process %d/%d, devices: %s",
      jax.process_index(),
      jax.process_count(),
      jax.devices(),
  )
  logging.info("config:\n%s", config)
  from rlcs_jax import preemption

  try:
    jobs[config.job](config, workdir)
  except preemption.Preempted as e:
    logging.warning("%s", e)  # Clean exit: the checkpoint is saved.


def run():
  # Before anything initialises JAX's backends; see host_memory.
  host_memory.reuse_freed_memory()
  flags.mark_flags_as_required(["config", "workdir"])
  from rlcs_jax import config_keys

  try:
    config_keys.check_overrides(sys.argv[1:])
  except (config_keys.UnknownConfigKeyError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  try:
    app.run(main)
  except KeyboardInterrupt:
    sys.exit(130)


if __name__ == "__main__":
  run()
