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
  """`jax.jit(fun, **kwargs)` compiled with COMPILER_OPTIONS; a decorator too.

  JAX takes compiler options on top-level jits only (it raises when one is
  staged into another computation), so a call with traced arguments (inside
  another jit, `lax.scan`, `grad`, `vmap` or `eval_shape`) runs `fun` jitted
  without them; the enclosing computation compiles with its own options.
  """
  if fun is None:
    return functools.partial(jit, **kwargs)
  return _Jitted(fun, kwargs)


class _Jitted:
  """A jitted function with COMPILER_OPTIONS at top level (see `jit`)."""

  def __init__(self, fun: Callable, kwargs: dict[str, Any]):
    self.top_level = jax.jit(fun, compiler_options=COMPILER_OPTIONS, **kwargs)
    self.nested = jax.jit(fun, **kwargs)
    functools.update_wrapper(self, fun)

  def __call__(self, *args, **kwargs):
    leaves = jax.tree.leaves((args, kwargs))
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
      return self.nested(*args, **kwargs)
    return self.top_level(*args, **kwargs)

  def __getattr__(self, name: str):
    # lower, trace, eval_shape, ...: the top-level jit's.
    return getattr(self.top_level, name)
