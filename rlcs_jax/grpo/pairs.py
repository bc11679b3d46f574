"""(sum, count) metric pairs: how every kernel in `grpo/` reports numbers.

Each kernel returns its diagnostics as a dict mapping a name to a pair
`(sum, count)` of jnp scalars (float32 sum, int32 count). Micro-batches and
data-parallel shards then combine exactly: add the sums, add the counts and
divide once at the end with `finalize`. A mean of means is never taken, so a
shard with few valid tokens weighs exactly as much as its tokens.

Two name suffixes are not additive, on purpose:

  * `*_max`: the pair is `(maximum, any)`, where `any` is 1 when the maximum
    was taken over at least one valid element and 0 otherwise. Combine by
    taking the maximum of both entries (`combine` and `all_reduce` do this).
  * `*_min`: likewise with the minimum of the first entry.

`finalize` needs no special case for them: it divides by `max(count, 1)`,
which is 1.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

Pair = tuple[jax.Array, jax.Array]
Metrics = dict[str, Pair]


def masked_pair(x: jax.Array, mask: jax.Array) -> Pair:
  """Returns (Σ x over mask, #mask) as (float32, int32) scalars."""
  mask = mask.astype(bool)
  total = jnp.sum(jnp.where(mask, x.astype(jnp.float32), 0.0))
  return total, jnp.sum(mask, dtype=jnp.int32)


def count_pair(event: jax.Array, mask: jax.Array) -> Pair:
  """Returns (#(event & mask), #mask): a fraction that combines exactly."""
  mask = mask.astype(bool)
  hits = jnp.sum(event.astype(bool) & mask, dtype=jnp.int32)
  return hits.astype(jnp.float32), jnp.sum(mask, dtype=jnp.int32)


def max_pair(x: jax.Array, mask: jax.Array, *, fill: float) -> Pair:
  """Returns (max x over mask, any(mask)); `fill` is the value when empty.

  Args:
    x: values.
    mask: which values count.
    fill: returned as the maximum when nothing is valid. Choose a lower bound
      of the quantity (e.g. 0 for ratios) so combining with `max` is exact.
  """
  mask = mask.astype(bool)
  value = jnp.max(jnp.where(mask, x.astype(jnp.float32), fill))
  return value, jnp.any(mask).astype(jnp.int32)


def min_pair(x: jax.Array, mask: jax.Array, *, fill: float) -> Pair:
  """Returns (min x over mask, any(mask)); see `max_pair`."""
  mask = mask.astype(bool)
  value = jnp.min(jnp.where(mask, x.astype(jnp.float32), fill))
  return value, jnp.any(mask).astype(jnp.int32)


def _combine_two(name: str, a: Pair, b: Pair) -> Pair:
  if name.endswith("_max"):
    return jnp.maximum(a[0], b[0]), jnp.maximum(a[1], b[1])
  if name.endswith("_min"):
    return jnp.minimum(a[0], b[0]), jnp.maximum(a[1], b[1])
  return a[0] + b[0], a[1] + b[1]


def combine(pairs: Sequence[Any]) -> Any:
  """Combines (sum, count) results of several micro-batches or shards.

  Args:
    pairs: either a sequence of pairs `(sum, count)` (e.g. the loss values),
      which are added, or a sequence of metric dicts, combined key by key
      (`*_max` / `*_min` keys by maximum / minimum, others by addition). A key
      missing from some dicts is combined over the dicts that have it.

  Returns:
    One pair, or one dict, of the same kind as the inputs.
  """
  if not pairs:
    raise ValueError("combine() needs at least one element.")
  if isinstance(pairs[0], Mapping):
    out = {}
    for metrics in pairs:
      for name, pair in metrics.items():
        out[name] = _combine_two(name, out[name], pair) if name in out else pair
    return out
  total = pairs[0]
  for pair in pairs[1:]:
    total = _combine_two("", total, pair)
  return total


def finalize(pair: Pair) -> jax.Array:
  """Returns sum / max(count, 1) in float32 (0 for an empty pair)."""
  total, count = pair
  return jnp.asarray(total, jnp.float32) / jnp.maximum(
      jnp.asarray(count, jnp.float32), 1.0
  )


def finalize_all(metrics: Mapping[str, Pair]) -> dict[str, jax.Array]:
  """Applies `finalize` to every pair of a metric dict."""
  return {name: finalize(pair) for name, pair in metrics.items()}


def all_reduce(metrics: Mapping[str, Pair], axis_name: str) -> Metrics:
  """Combines metric dicts across a named mesh axis (inside shard_map).

  Additive keys are `psum`-ed; `*_max` / `*_min` keys use `pmax` / `pmin`
  on the value and `pmax` on the count, matching `combine`.
  """
  out = {}
  for name, (total, count) in metrics.items():
    if name.endswith("_max"):
      out[name] = (
          jax.lax.pmax(total, axis_name),
          jax.lax.pmax(count, axis_name),
      )
    elif name.endswith("_min"):
      out[name] = (
          jax.lax.pmin(total, axis_name),
          jax.lax.pmax(count, axis_name),
      )
    else:
      out[name] = (
          jax.lax.psum(total, axis_name),
          jax.lax.psum(count, axis_name),
      )
  return out
