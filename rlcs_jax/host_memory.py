"""glibc malloc settings that let XLA:CPU reuse its freed buffers.

XLA:CPU allocates each execution's temporaries (one block: ~0.9 GB for a
SmolLM2-135M SFT step at 8 x 256) and YNNPACK's fusion scratch with `malloc`
on its worker threads, and frees them when the execution ends. glibc serves
blocks that large with a fresh `mmap` every time (a worker thread's arena
falls back to `mmap` for any block larger than its 64 MB heap, whatever
M_MMAP_MAX says), so each step faults in and zeroes all of that memory
again: 1.6M minor page faults and 5.3 s of kernel time in an 8.3 s bf16
SmolLM2 step on a 2-core VM (`RLCS_JAX_MALLOC=default python -m
experiments.cpu_profile --sections train`).

`reuse_freed_memory()` sets, with `mallopt`,
  * M_ARENA_MAX = 1: threads allocate from the main heap,
  * M_MMAP_MAX = 0: large blocks come from that heap too, not from `mmap`,
  * M_TRIM_THRESHOLD = SIZE_MAX: the heap's free top is never handed back,
so the next step reuses the memory the last one freed (no page faults). The
price is that the process keeps its peak heap until it exits, which a
training job does anyway. It is a no-op off glibc, and when the environment
sets RLCS_JAX_MALLOC=default.

It must run before JAX initialises its backends (its first computation, or
`jax.devices()`): threads that already have an arena keep it. Entry points
(`rlcs_jax.main`, the benchmark and profile scripts) call it first thing;
in a notebook, call it in the first cell.
"""

import ctypes
import os
import platform

from absl import logging

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_OPT_OUT = "RLCS_JAX_MALLOC"


def reuse_freed_memory() -> bool:
  """Applies the settings above; returns whether they were applied."""
  if os.environ.get(_OPT_OUT) == "default":
    return False
  if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return False
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top

  if xla_bridge.backends_are_initialized():
    logging.warning(
        "host_memory.reuse_freed_memory() called after JAX initialised its "
        "backends; its threads keep their malloc arenas, so large buffers "
        "are still mapped afresh each step. Call it before the first JAX "
        "computation."
    )
  mallopt = ctypes.CDLL("libc.so.6").mallopt
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  # mallopt returns 1 on success; -1 (as an int) is SIZE_MAX as a size_t.
  return all(
      mallopt(param, value) == 1
      for param, value in (
          (_M_ARENA_MAX, 1),
          (_M_MMAP_MAX, 0),
          (_M_TRIM_THRESHOLD, -1),
      )
  )
