"""host_memory: freed XLA:CPU buffers are reused instead of mapped afresh."""

import os
import subprocess
import sys

from absl import logging
import pytest

from rlcs_jax import host_memory

# Runs a jitted program whose temporary (a [4096, 8192] float32 product,
# 128 MB: more than a worker thread's 64 MB malloc heap) is allocated and
# freed on every call, and prints the minor page faults of 20 calls in units
# of that temporary: glibc's default faults it in on every call (20); the
# reused heap still grows on some of the first calls, until the freed blocks
# coalesce into holes that fit the next request (0-7 of 20 seen).
_PROGRAM = r"""
import resource
from rlcs_jax import host_memory
print("applied", host_memory.reuse_freed_memory())
import jax, jax.numpy as jnp
f = jax.jit(lambda a, b, w: (a[:, None] * b[None, :]) @ w)
a, b, w = jnp.ones(4096), jnp.ones(8192), jnp.ones((8192, 16))
f(a, b, w).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
  f(a, b, w).block_until_ready()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print("temporaries", round(faults / (128 << 20 >> 12), 1))
"""


def _run(malloc_env: str | None) -> tuple[bool, float]:
  env = {k: v for k, v in os.environ.items() if k != "RLCS_JAX_MALLOC"}
  if malloc_env is not None:
    env["RLCS_JAX_MALLOC"] = malloc_env
  env["XLA_FLAGS"] = ""  # One CPU device is enough.
  out = subprocess.run(
      [sys.executable, "-c", _PROGRAM],
      env=env,
      capture_output=True,
      text=True,
      check=True,
      timeout=300,
  ).stdout.split("\n")
  fields = dict(line.split() for line in out if line)
  return fields["applied"] == "True", float(fields["temporaries"])


pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc malloc only"
)


def test_reused_buffers_do_not_fault_and_the_default_does():
  applied, faulted = _run(None)
  assert applied
  assert faulted < 10, faulted
  applied, faulted = _run("default")  # The opt-out keeps glibc's behaviour.
  assert not applied
  assert faulted > 19, faulted


def test_warns_when_backends_are_already_initialised(monkeypatch):
  import jax  # pylint: disable=g-import-not-at-top

  jax.devices()  # Initialised (the suite's conftest does it anyway).
  warnings = []
  monkeypatch.setattr(logging, "warning", lambda msg, *a: warnings.append(msg))
  host_memory.reuse_freed_memory()
  assert any("before the first JAX computation" in w for w in warnings)
