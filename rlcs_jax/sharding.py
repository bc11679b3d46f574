"""Device mesh from config, logical->mesh rules, and shardings of a state.

One mesh with axes (`data`, `fsdp`, `tensor`); a size of -1 takes the devices
left over. Model code names logical axes only; the rules table in the config
(`sharding_rules`) maps them to mesh axes. A logical axis whose size is not
divisible by its mesh axes is replicated instead (e.g. SmolLM2's 3 kv heads
on tensor=2), and the fallback is logged once per parameter.

Host <-> device with several processes: `global_batch` takes each process's
own rows; `global_from_host` takes a value every process holds in full (as
after `allgather_json`), and `host_from_global` brings the result of a
global computation back to every process in full.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

from absl import logging
import flax.linen as nn
import jax
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
import numpy as np

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # The batch dimension is split over both.

Rules = Sequence[tuple[str, Any]]


def mesh_shape(sizes: dict[str, int], num_devices: int) -> tuple[int, ...]:
  """Resolves one -1 entry; checks the product equals the device count."""
  shape = [int(sizes[a]) for a in MESH_AXES]
  if shape.count(-1) > 1:
    raise ValueError(f"at most one mesh axis may be -1, got {sizes}")
  if -1 in shape:
    known = math.prod(s for s in shape if s != -1)
    if num_devices % known:
      raise ValueError(f"mesh {sizes} does not divide {num_devices} devices")
    shape[shape.index(-1)] = num_devices // known
  if math.prod(shape) != num_devices:
    raise ValueError(
        f"mesh {dict(zip(MESH_AXES, shape))} needs "
        f"{math.prod(shape)} devices, but {num_devices} are "
        "available; use -1 for one axis to fill the rest"
    )
  return tuple(shape)


def make_mesh(
    sizes: dict[str, int], devices: Sequence[jax.Device] | None = None
) -> Mesh:
  """Builds the (data, fsdp, tensor) mesh with classic (Auto) axis types."""
  devices = list(devices if devices is not None else jax.devices())
  shape = mesh_shape(sizes, len(devices))
  return jax.make_mesh(
      shape, MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices
  )


def _axis_size(mesh: Mesh, axes: Any) -> int:
  if axes is None:
    return 1
  if isinstance(axes, str):
    axes = (axes,)
  return math.prod(mesh.shape[a] for a in axes)


def logical_to_sharding(
    logical_specs: Any, abstract: Any, mesh: Mesh, rules: Rules
) -> Any:
  """Maps a tree of logical PartitionSpecs to NamedShardings.

  Dimensions not divisible by their mesh axes are replicated.
  """
  rules = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in rules)
  mesh_specs = nn.logical_to_mesh(logical_specs, rules)

  def fit(spec, leaf):
    if spec is None or not isinstance(spec, P):
      return NamedSharding(mesh, P())
    dims = []
    for size, axes in zip(
        leaf.shape, tuple(spec) + (None,) * (len(leaf.shape) - len(spec))
    ):
      if axes is not None and size % _axis_size(mesh, axes):
        logging.info(
            "replicating a dim of size %d: not divisible by mesh " "axes %s",
            size,
            axes,
        )
        axes = None
      dims.append(axes)
    return NamedSharding(mesh, P(*dims))

  return jax.tree.map(
      fit, mesh_specs, abstract, is_leaf=lambda x: isinstance(x, P) or x is None
  )


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
  """Leading dim over (data, fsdp); the rest replicated."""
  return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def global_batch(local: Any, mesh: Mesh) -> Any:
  """Host numpy batch (this process's rows) -> global sharded jax arrays."""

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_process_local_data(
        batch_sharding(mesh, x.ndim), x
    )

  return jax.tree.map(put, local)


def batch_divisor(mesh: Mesh) -> int:
  """The global batch must be a multiple of this."""
  return _axis_size(mesh, BATCH_AXES)


def global_from_host(x: Any, sharding: NamedSharding) -> jax.Array:
  """A global array from a host value that every process holds in full."""
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda i: x[i])


def host_from_global(tree: Any) -> Any:
  """Arrays of a global computation -> full numpy values on every process."""
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def allgather_json(items: Sequence[Any]) -> list[Any]:
  """Every process's list of JSON values, concatenated in process order."""
  if jax.process_count() == 1:
    return list(items)
  data = np.frombuffer(json.dumps(list(items)).encode("utf-8"), np.uint8)
  sizes = multihost_utils.process_allgather(np.int32(data.size))
  # A power-of-two width keeps the gather's compiled shapes few.
  width = 1 << max(int(np.max(sizes)) - 1, 0).bit_length()
  padded = np.zeros(width, np.uint8)
  padded[: data.size] = data
  out = []
  for n, row in zip(sizes, multihost_utils.process_allgather(padded)):
    out += json.loads(row[: int(n)].tobytes().decode("utf-8"))
  return out
