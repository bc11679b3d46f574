"""Tests for rlcs_jax.grpo.pairs: (sum, count) metrics combine exactly."""

import jax
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from rlcs_jax.grpo import losses
from rlcs_jax.grpo import pairs


def test_combine_and_finalize_by_hand():
  a = {"loss": (3.0, 2), "ratio_max": (1.5, 1), "adv_min": (-1.0, 1)}
  b = {
      "loss": (1.0, 2),
      "ratio_max": (1.2, 1),
      "adv_min": (-2.0, 1),
      "kl": (0.5, 1),
  }
  out = pairs.combine([a, b])
  np.testing.assert_allclose(out["loss"], (4.0, 4))
  np.testing.assert_allclose(out["ratio_max"], (1.5, 1))
  np.testing.assert_allclose(out["adv_min"], (-2.0, 1))
  np.testing.assert_allclose(out["kl"], (0.5, 1))
  np.testing.assert_allclose(pairs.combine([(3.0, 2), (1.0, 2)]), (4.0, 4))
  np.testing.assert_allclose(pairs.finalize((4.0, 4)), 1.0)
  np.testing.assert_allclose(pairs.finalize((0.0, 0)), 0.0)
  np.testing.assert_allclose(pairs.finalize_all(out)["ratio_max"], 1.5)
  with pytest.raises(ValueError):
    pairs.combine([])


def test_all_reduce_across_8_devices_equals_full_batch():
  # One sequence per device of a data-parallel mesh; all_reduce of the
  # per-shard metrics must equal the metrics of the whole batch.
  devices = np.array(jax.devices()[:8])
  assert devices.size == 8, "tests/conftest.py sets 8 CPU devices"
  mesh = jax.sharding.Mesh(devices, ("data",))
  cfg = losses.LossConfig(beta=0.1, aggregation="seq_mean_token_mean")
  rng = np.random.default_rng(0)
  old = rng.normal(-2.0, 1.0, size=(8, 5)).astype(np.float32)
  logp = old + rng.normal(0.0, 0.4, size=old.shape).astype(np.float32)
  ref = old + rng.normal(0.0, 0.4, size=old.shape).astype(np.float32)
  adv = rng.normal(size=8).astype(np.float32)
  mask = np.arange(5)[None, :] < np.array([5, 0, 3, 1, 5, 2, 4, 1])[:, None]

  def shard_fn(logp, old, adv, mask, ref):
    loss, metrics = losses.grpo_loss(logp, old, adv, mask, cfg, ref_logp_BL=ref)
    out = pairs.all_reduce({"loss": loss, **metrics}, "data")
    return out

  sharded = jax.jit(
      jax.shard_map(
          shard_fn,
          mesh=mesh,
          in_specs=(P("data"),) * 5,
          out_specs=P(),
      )
  )
  got = sharded(logp, old, adv, mask, ref)
  loss, full = jax.jit(losses.grpo_loss, static_argnames="cfg")(
      logp, old, adv, mask, cfg, ref_logp_BL=ref
  )
  want = {"loss": loss, **full}
  assert set(got) == set(want)
  for name in want:
    np.testing.assert_allclose(got[name], want[name], rtol=1e-5, err_msg=name)
