"""`jit`: `jax.jit` with the XLA compiler options every library function uses.

COMPILER_OPTIONS turns on region analysis in XLA:CPU's copy insertion. Without
it, XLA:CPU copied both Adam moments of every parameter in each training
step before updating them in place: the step keeps the old state on a
non-finite gradient (`numerics.keep_if_finite`), so each new moment is a
select between the old one and the updated one, and XLA fused the update
into both that select and the parameter update, two fusions that read the
old moment, one of which overwrites it. With region analysis the compiler
finds the copies unnecessary (`python -m experiments.cpu_profile --sections
compiler` times the library's steps compiled with and without). The option
is a field of XLA's DebugOptions, which every backend's compile options
parse; only XLA:CPU acts on it (not tried on TPU or GPU here).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax

COMPILER_OPTIONS = {"xla_cpu_copy_insertion_use_region_analysis": True}


def jit(fun: Callable | None = None, **kwargs: Any):
  """`jax.jit(fun, **kwargs)` with COMPILER_OPTIONS; a decorator as well."""
  if fun is None:
    return functools.partial(jit, **kwargs)
  return jax.jit(fun, compiler_options=COMPILER_OPTIONS, **kwargs)
