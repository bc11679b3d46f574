"""The explicit KV cache of `model.transformer`: layout, allocation, writes.

Cache: {"layers": ({"k": [B,K,H,S], "v": [B,K,S,H]}, ...),
        "valid": [B,S] bool, "end": int32 scalar (next slot to write)}.

Shape legend: B batch, K kv heads, S slots, H head dim.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from rlcs_jax.model.config import ModelConfig

Array = jax.Array
Cache = dict[str, Any]

# Axes of the cached keys and values (b batch, k kv head, s slot, h head
# dim). Keys are stored transposed so that both attention products over the
# cache are plain batched matmuls: scores = q @ k[h, s], out = p @ v[s, h].
# As [s, h], the scores' matmul read keys transposed and took twice as long.
CACHE_LAYOUT = {"k": "bkhs", "v": "bksh"}
CACHE_SLOT_AXIS = {n: a.index("s") for n, a in CACHE_LAYOUT.items()}


def init_cache(cfg: ModelConfig, batch: int, length: int) -> Cache:
  """Returns an empty cache with room for `length` tokens per row."""
  cdt = cfg.kv_dtype
  sizes = dict(b=batch, k=cfg.num_kv_heads, s=length, h=cfg.head_dim)
  shape = {n: tuple(sizes[a] for a in CACHE_LAYOUT[n]) for n in ("k", "v")}
  return {
      "layers": tuple(
          {n: jnp.zeros(shape[n], cdt) for n in ("k", "v")}
          for _ in range(cfg.num_layers)
      ),
      "valid": jnp.zeros((batch, length), bool),
      "end": jnp.zeros((), jnp.int32),
  }


def check_room(cache: Cache, new_tokens: int) -> None:
  """Raises if writing `new_tokens` at `cache["end"]` would overflow.

  S and L are static, so L > S always fails here. `end` is usually traced
  (inside jit or a decode loop); then `end + L > S` cannot be checked at
  trace time, and `dynamic_update_slice` would silently clamp the write
  onto the last slots. Callers that trace `end` must bound it themselves:
  the sampler checks prompt bucket + max_new_tokens against the cache length
  before tracing. A concrete `end` (eager calls) is checked here.
  """
  slots = cache["valid"].shape[1]
  if new_tokens > slots:
    raise ValueError(
        f"cannot write {new_tokens} tokens into a KV cache of " f"{slots} slots"
    )
  try:
    end = int(cache["end"])
  except (
      jax.errors.ConcretizationTypeError,
      jax.errors.TracerIntegerConversionError,
  ):
    return  # Traced: see the docstring.
  if end + new_tokens > slots:
    raise ValueError(
        f"KV cache overflow: writing {new_tokens} tokens at slot {end} needs "
        f"{end + new_tokens} slots but the cache has {slots}; allocate a "
        "longer cache (init_cache length)"
    )


def write_slots(cache_x: Array, new_x: Array, start) -> Array:
  """`dynamic_update_slice` of new slots into a cache array.

  A 16-bit float cache is written through its bit pattern: XLA:CPU's float
  normalization runs a bf16 update in f32, converting the whole cache to
  f32 and back for every decoded token; as uint16 no value is converted
  (the write still copies the cache, which XLA:CPU's in-place update needs
  a root without the bitcasts for). The same values either way; f32
  caches are updated in place.
  """
  if jnp.dtype(cache_x.dtype).itemsize != 2:
    return jax.lax.dynamic_update_slice(cache_x, new_x, start)
  bits = jax.lax.bitcast_convert_type
  return bits(
      jax.lax.dynamic_update_slice(
          bits(cache_x, jnp.uint16), bits(new_x, jnp.uint16), start
      ),
      cache_x.dtype,
  )
