"""orbax checkpoints: train state + data-iterator state + run metadata.

Each step directory holds three items: `state` (the sharded TrainState,
StandardSave), `data` (the grain iterator state and RNG bookkeeping, JSON) and
`meta` (the model config and step, JSON). orbax finalizes a step atomically,
so a half-written step is never listed. Restoring checks the saved model
config against the current one and names every mismatched key.

Half-written steps are never restored. orbax writes a step into
`<step>.orbax-checkpoint-tmp*` and renames it when complete (after writing
`commit_success.txt` into it); on a local filesystem orbax 0.12 lists any
directory named like a step, so a step directory without the commit file
(a copy cut short, a non-atomic filesystem) would be picked up and fail to
restore. On opening, process 0 therefore moves such directories aside to
`<step>.incomplete` and orbax deletes leftover temporary directories.

In a single process, jax.Arrays are saved without orbax's replica-parallel
writes (see `_single_process_array_writes`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any

from absl import logging
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint._src.metadata import array_metadata_store


class CheckpointMismatchError(ValueError):
  """A checkpoint written by a different model or state layout."""


COMMIT_FILE = "commit_success.txt"  # Written by orbax when a step completes.


def set_aside_incomplete_steps(directory: str) -> list[str]:
  """Renames step directories lacking the commit file to `<step>.incomplete`.

  Kept, not deleted, for inspection. Returns the new paths. Call on one
  process only.
  """
  moved = []
  if not os.path.isdir(directory):
    return moved
  for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name)
    if not (name.isdigit() and os.path.isdir(path)):
      continue
    if os.path.exists(os.path.join(path, COMMIT_FILE)):
      continue
    target = f"{path}.incomplete"
    if os.path.exists(target):
      target = f"{path}.incomplete-{time.time_ns()}"
    os.rename(path, target)
    logging.warning(
        "checkpoint step %s has no %s (half-written); moved to %s",
        path,
        COMMIT_FILE,
        target,
    )
    moved.append(target)
  return moved


@functools.cache
def _single_process_array_writes() -> None:
  """Registers orbax's jax.Array handler without replica-parallel writes
  when this is the only process (its default otherwise, with the same
  array-metadata store).

  Replica-parallel writes let each host write a share of a replicated
  array; in one process every replica is local, and orbax then only cuts
  each replicated array into one slice per device, an eager op each
  (compiled once per shape): one per device per leaf of a replicated train
  state on every save (tests/reliability/checkpoint_test.py checks that a
  save compiles nothing). Process-wide: orbax keeps its handlers in a
  global registry.
  """
  if jax.process_count() > 1:
    return
  ocp.type_handlers.register_type_handler(
      jax.Array,
      ocp.type_handlers.ArrayHandler(
          use_replica_parallel=False,
          array_metadata_store=array_metadata_store.Store(),
      ),
      override=True,
  )


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager` with our three items."""

  def __init__(
      self,
      directory: str,
      *,
      max_to_keep: int = 3,
      save_interval_steps: int = 1,
  ):
    self.directory = os.path.abspath(directory)
    _single_process_array_writes()
    if jax.process_index() == 0:
      set_aside_incomplete_steps(self.directory)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices(f"checkpointer:{self.directory}")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        save_interval_steps=save_interval_steps,
        create=True,
        enable_async_checkpointing=False,
        cleanup_tmp_directories=True,  # Unfinished saves of a killed run.
    )
    self._mngr = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "data", "meta")
    )

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._mngr.all_steps())

  def save(
      self,
      step: int,
      state: Any,
      data: dict[str, Any],
      meta: dict[str, Any],
      *,
      force: bool = False,
  ) -> bool:
    """Saves if the interval says so (or `force`); returns whether it did."""
    saved = self._mngr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data),
            meta=ocp.args.JsonSave(meta),
        ),
        force=force,
    )
    self._mngr.wait_until_finished()
    return saved

  def restore(
      self, abstract_state: Any, meta: dict[str, Any], step: int | None = None
  ) -> tuple[Any, dict[str, Any], int]:
    """Restores (state, data, step) onto the shardings of `abstract_state`."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    saved_meta = self._mngr.restore(
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
    )["meta"]
    check_meta(saved_meta, meta, f"{self.directory}/{step}")
    try:
      restored = self._mngr.restore(
          step,
          args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract_state),
              data=ocp.args.JsonRestore(),
          ),
      )
    except (ValueError, KeyError) as e:
      raise CheckpointMismatchError(
          f"checkpoint {self.directory}/{step} does not match the current "
          f"train state layout: {e}"
      ) from e
    logging.info("restored checkpoint %s/%d", self.directory, step)
    return restored["state"], restored["data"], step

  def close(self):
    self._mngr.close()


def check_meta(
    saved: dict[str, Any], current: dict[str, Any], where: str
) -> None:
  """Raises naming every key whose saved value differs from the current."""
  diffs = []
  for key in sorted(set(saved) | set(current)):
    if key in ("step",):
      continue
    a, b = saved.get(key), current.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
          diffs.append(
              f"{key}.{k}: checkpoint={a.get(k)!r} " f"config={b.get(k)!r}"
          )
    elif a != b:
      diffs.append(f"{key}: checkpoint={a!r} config={b!r}")
  if diffs:
    raise CheckpointMismatchError(
        f"checkpoint {where} was written with a different configuration:\n  "
        + "\n  ".join(diffs)
        + "\nUse a fresh --workdir or restore the "
        "original settings."
    )


def model_meta(model_cfg: Any) -> dict[str, Any]:
  """The part of the metadata that must match for a restore to be valid."""
  fields = dataclasses.asdict(model_cfg)
  # Compute-only settings may change between save and restore.
  for k in ("dtype", "cache_dtype", "remat"):
    fields.pop(k, None)
  return {"model": fields}


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs with shardings, for `restore`."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
      tree,
  )


def save_params(path: str, params: Any) -> None:
  """Saves a parameter pytree (a stage's output); atomic via orbax."""
  path = os.path.abspath(path)
  if os.path.exists(path):
    return
  _single_process_array_writes()
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, params)
    ckptr.wait_until_finished()


def load_params(path: str, abstract: Any) -> Any:
  """Restores a parameter pytree onto the shardings in `abstract`."""
  path = os.path.abspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no saved parameters at {path}")
  try:
    with ocp.StandardCheckpointer() as ckptr:
      return ckptr.restore(path, abstract)
  except (ValueError, KeyError) as e:
    raise CheckpointMismatchError(
        f"parameters at {path} do not match the current model config: {e}"
    ) from e
