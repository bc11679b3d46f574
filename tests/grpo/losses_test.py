"""Tests for rlcs_jax.grpo.losses: hand-computed surrogate values/gradients."""

import math

import chex
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcs_jax.grpo import losses
from rlcs_jax.grpo import pairs

grpo_loss = jax.jit(losses.grpo_loss, static_argnames="cfg")
_k3 = jax.jit(losses.kl_k3)

# Hand-made batch, ε_low = ε_high = 0.2, no KL.
#   seq 0, A = +1, ρ = [1.5, 0.5, 1.1], all valid:
#     ρ=1.5: min(1.5, 1.2) = 1.2 → ℓ = −1.2, clipped high, ∂ℓ/∂logp = 0
#     ρ=0.5: min(0.5, 0.8) = 0.5 → ℓ = −0.5,              ∂ℓ/∂logp = −0.5
#     ρ=1.1: min(1.1, 1.1) = 1.1 → ℓ = −1.1,              ∂ℓ/∂logp = −1.1
#   seq 1, A = −2, ρ = [1.5, 0.5, ·], last token masked:
#     ρ=1.5: min(−3.0, −2.4) = −3.0 → ℓ = 3.0,             ∂ℓ/∂logp = 3.0
#     ρ=0.5: min(−1.0, −1.6) = −1.6 → ℓ = 1.6, clipped low, ∂ℓ/∂logp = 0
#   Σ seq 0 = −2.8 (3 tokens), Σ seq 1 = 4.6 (2 tokens).
RATIO = np.array([[1.5, 0.5, 1.1], [1.5, 0.5, 1.0]], np.float32)
OLD_LOGP = np.array([[-1.0, -2.0, -0.5], [-0.3, -1.2, -7.0]], np.float32)
LOGP = OLD_LOGP + np.log(RATIO)
ADV = np.array([1.0, -2.0], np.float32)
MASK = np.array([[1, 1, 1], [1, 1, 0]], bool)

HAND = {
    # aggregation: (loss_sum, loss_count, d loss_sum / d logp)
    "token_mean": (1.8, 5, [[0.0, -0.5, -1.1], [3.0, 0.0, 0.0]]),
    "seq_mean_token_mean": (
        -2.8 / 3 + 4.6 / 2,
        2,
        [[0.0, -0.5 / 3, -1.1 / 3], [1.5, 0.0, 0.0]],
    ),
    # max_response_len = 4.
    "seq_mean_token_sum_norm": (
        (-2.8 + 4.6) / 4,
        2,
        [[0.0, -0.125, -0.275], [0.75, 0.0, 0.0]],
    ),
}


def _cfg(aggregation, **kwargs):
  kwargs.setdefault("beta", 0.0)
  return losses.LossConfig(
      aggregation=aggregation, max_response_len=4, **kwargs
  )


@pytest.mark.parametrize("aggregation", sorted(HAND))
def test_surrogate_value_and_gradient_by_hand(aggregation):
  cfg = _cfg(aggregation)
  loss_sum, loss_count, grad_logp = HAND[aggregation]

  def loss_fn(logp):
    (total, count), metrics = losses.grpo_loss(logp, OLD_LOGP, ADV, MASK, cfg)
    return total, (count, metrics)

  (total, (count, metrics)), grad = jax.jit(
      jax.value_and_grad(loss_fn, has_aux=True)
  )(LOGP)
  np.testing.assert_allclose(total, loss_sum, rtol=1e-5)
  assert int(count) == loss_count
  np.testing.assert_allclose(grad, grad_logp, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      losses.finalize((total, count)), loss_sum / loss_count, rtol=1e-5
  )
  # Token-level metrics do not depend on the aggregation.
  np.testing.assert_allclose(metrics["pg_loss"], (1.8, 5), rtol=1e-5)


def test_clip_fractions_and_ratio_metrics_by_hand():
  # From the batch above: one token clipped high (seq 0, ρ=1.5, A>0), one
  # clipped low (seq 1, ρ=0.5, A<0); ρ=1.5 with A<0 and ρ=0.5 with A>0 are
  # not clipped; the masked token (ρ=1.0) is not counted.
  _, metrics = grpo_loss(LOGP, OLD_LOGP, ADV, MASK, _cfg("token_mean"))
  np.testing.assert_allclose(metrics["clip_frac_low"], (1, 5))
  np.testing.assert_allclose(metrics["clip_frac_high"], (1, 5))
  np.testing.assert_allclose(metrics["clip_frac"], (2, 5))
  np.testing.assert_allclose(metrics["ratio_mean"], (5.1, 5), rtol=1e-5)
  np.testing.assert_allclose(metrics["ratio_max"], (1.5, 1), rtol=1e-5)
  # Asymmetric (DAPO) clipping: ε_high = 0.6 un-clips ρ = 1.5.
  _, metrics = grpo_loss(
      LOGP, OLD_LOGP, ADV, MASK, _cfg("token_mean", clip_eps_high=0.6)
  )
  np.testing.assert_allclose(metrics["clip_frac_high"], (0, 5))
  np.testing.assert_allclose(metrics["clip_frac_low"], (1, 5))


def test_k3_kl_term_value_and_gradient_by_hand():
  # One token with ρ = 1 (no clipping), A = 0, ref − logp = ln 2:
  #   k3 = 2 − ln 2 − 1 = 1 − ln 2,  ∂k3/∂logp = 1 − e^{ref − logp} = −1.
  # With β = 0.1 the loss is 0.1·(1 − ln 2) and its gradient −0.1.
  cfg = losses.LossConfig(beta=0.1, kl_estimator="k3", aggregation="token_mean")
  logp = jnp.array([[-2.0, 0.0]])
  ref = logp + math.log(2.0)
  mask = jnp.array([[True, False]])

  def loss_fn(x):
    (total, count), metrics = losses.grpo_loss(
        x, logp, jnp.zeros(1), mask, cfg, ref_logp_BL=ref
    )
    return total, (count, metrics)

  (total, (count, metrics)), grad = jax.jit(
      jax.value_and_grad(loss_fn, has_aux=True)
  )(logp)
  np.testing.assert_allclose(total, 0.1 * (1 - math.log(2)), rtol=1e-6)
  assert int(count) == 1
  np.testing.assert_allclose(grad, [[-0.1, 0.0]], rtol=1e-5)
  np.testing.assert_allclose(metrics["kl"], (1 - math.log(2), 1), rtol=1e-6)


def test_kl_estimators_by_hand():
  logp, ref = jnp.array([0.5]), jnp.array([-0.5])  # logp − ref = 1.
  values = {
      name: float(fn(logp, ref)[0]) for name, fn in losses.KL_ESTIMATORS.items()
  }
  np.testing.assert_allclose(values["k1"], 1.0)
  np.testing.assert_allclose(values["k2"], 0.5)
  np.testing.assert_allclose(
      values["k3"], math.exp(-1.0) + 1.0 - 1.0, rtol=1e-6
  )
  assert values["none"] == 0.0


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(
    st.lists(st.floats(-30, 30, width=32), min_size=16, max_size=16),
    st.lists(st.floats(-30, 30, width=32), min_size=16, max_size=16),
)
def test_k3_is_nonnegative_everywhere(logp, ref):
  logp = np.asarray(logp, np.float32)
  ref = np.asarray(ref, np.float32)
  k3 = np.asarray(_k3(logp, ref))
  assert np.all(k3 >= 0.0)
  np.testing.assert_array_equal(np.asarray(_k3(logp, logp)), 0.0)


def test_k3_tiny_differences_are_not_negative():
  logp = jnp.zeros(7)
  ref = jnp.array([0.0, 1e-8, -1e-8, 3e-7, -3e-7, 1e-4, -1e-4])
  k3 = _k3(logp, ref)
  assert np.all(np.asarray(k3) >= 0.0)
  np.testing.assert_allclose(k3[5:], 0.5e-8, rtol=5e-3)


def test_missing_reference_raises_and_beta_zero_skips_it():
  with pytest.raises(ValueError, match="needs ref_logp_BL"):
    losses.grpo_loss(LOGP, OLD_LOGP, ADV, MASK, losses.LossConfig(beta=0.04))
  # β = 0 or estimator "none": no reference model needed.
  for cfg in (
      losses.LossConfig(beta=0.0),
      losses.LossConfig(beta=0.1, kl_estimator="none"),
  ):
    (total, _), metrics = grpo_loss(LOGP, OLD_LOGP, ADV, MASK, cfg)
    assert np.isfinite(total)
    assert "kl" not in metrics


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"clip_eps_low": 1.0}, "clip_eps_low"),
        ({"clip_eps_high": -0.1}, "clip_eps_high"),
        ({"beta": float("nan")}, "beta"),
        ({"kl_estimator": "k4"}, "kl_estimator"),
        ({"aggregation": "mean"}, "aggregation"),
        ({"aggregation": "seq_mean_token_sum_norm"}, "max_response_len"),
        ({"max_response_len": 0}, "max_response_len"),
    ],
)
def test_config_validation(kwargs, message):
  with pytest.raises(ValueError, match=message):
    losses.LossConfig(**kwargs)


def _random_batch(seed, batch=6, length=7):
  rng = np.random.default_rng(seed)
  old = rng.normal(-2.0, 1.0, size=(batch, length)).astype(np.float32)
  logp = old + rng.normal(0.0, 0.3, size=old.shape).astype(np.float32)
  ref = old + rng.normal(0.0, 0.3, size=old.shape).astype(np.float32)
  adv = rng.normal(size=batch).astype(np.float32)
  lengths = np.array([7, 1, 4, 0, 6, 2])[:batch]  # Unequal; one empty row.
  mask = np.arange(length)[None, :] < lengths[:, None]
  weight = rng.uniform(0.5, 1.0, size=batch).astype(np.float32)
  entropy = rng.uniform(0.0, 3.0, size=old.shape).astype(np.float32)
  # Garbage at masked positions (ρ and e^{ref − logp} overflow to inf there)
  # must not leak into values or gradients.
  logp = np.where(mask, logp, -1e4).astype(np.float32)
  old = np.where(mask, old, -2e4).astype(np.float32)
  ref = np.where(mask, ref, 1e4).astype(np.float32)
  return logp, old, adv, mask, ref, weight, entropy


@pytest.mark.parametrize("aggregation", sorted(losses.AGGREGATIONS))
def test_micro_batches_combine_to_full_batch(aggregation):
  cfg = losses.LossConfig(
      beta=0.05,
      kl_estimator="k3",
      aggregation=aggregation,
      max_response_len=7,
  )
  batch = _random_batch(0)
  mask = batch[3]

  @jax.jit
  def loss_and_grad(logp, old, adv, mask, ref, weight, entropy):
    def loss_fn(x):
      loss, metrics = losses.grpo_loss(
          x,
          old,
          adv,
          mask,
          cfg,
          ref_logp_BL=ref,
          seq_weight_B=weight,
          entropy_BL=entropy,
      )
      return loss[0], (loss, metrics)

    (_, (loss, metrics)), grad = jax.value_and_grad(loss_fn, has_aux=True)(logp)
    return loss, metrics, grad

  def run(rows):
    return loss_and_grad(*(x[rows] for x in batch))

  full_loss, full_metrics, full_grad = run(slice(None))
  parts = [run(slice(0, 2)), run(slice(2, 6))]  # Unequal micro-batches.
  loss = pairs.combine([p[0] for p in parts])
  metrics = pairs.combine([p[1] for p in parts])
  np.testing.assert_allclose(loss[0], full_loss[0], rtol=1e-5)
  assert int(loss[1]) == int(full_loss[1])
  assert set(metrics) == set(full_metrics)
  for name in full_metrics:
    np.testing.assert_allclose(
        metrics[name], full_metrics[name], rtol=1e-5, err_msg=name
    )
  # Accumulated gradients / combined count == gradient of the full mean.
  grads = np.concatenate([p[2] for p in parts])
  np.testing.assert_allclose(grads, full_grad, rtol=1e-5, atol=1e-7)
  assert np.all(np.isfinite(full_grad))
  np.testing.assert_array_equal(full_grad[~mask], 0.0)
  # The empty row contributes to no count.
  expected_count = {"token_mean": mask.sum()}.get(aggregation, 5)
  assert int(full_loss[1]) == expected_count


def test_seq_weight_scales_each_sequence():
  logp, old, adv, mask, _, _, _ = _random_batch(1)
  cfg = losses.LossConfig(beta=0.0, aggregation="seq_mean_token_mean")
  weight = np.array([2.0, 0.0, 1.0, 1.0, 0.5, 3.0], np.float32)
  (weighted, _), _ = grpo_loss(logp, old, adv, mask, cfg, seq_weight_B=weight)
  per_seq = [
      float(
          grpo_loss(
              logp[i : i + 1],
              old[i : i + 1],
              adv[i : i + 1],
              mask[i : i + 1],
              cfg,
          )[0][0]
      )
      for i in range(6)
  ]
  np.testing.assert_allclose(weighted, np.dot(weight, per_seq), rtol=1e-5)


def test_ratio_is_one_and_gradient_is_minus_advantage_on_policy():
  # First iteration: old == current, so ρ = 1 and ∂ℓ/∂logp = −A per token.
  logp, _, adv, mask, _, _, _ = _random_batch(2)
  cfg = losses.LossConfig(beta=0.0, aggregation="token_mean")
  grad = jax.jit(
      jax.grad(lambda x: losses.grpo_loss(x, x, adv, mask, cfg)[0][0])
  )(logp)
  np.testing.assert_allclose(
      grad, np.where(mask, -adv[:, None], 0.0), rtol=1e-6
  )


def test_jit_and_no_retrace():
  chex.clear_trace_counter()
  cfg = losses.LossConfig(beta=0.04, aggregation="token_mean")

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(logp, old, adv, mask, ref):
    return losses.grpo_loss(logp, old, adv, mask, cfg, ref_logp_BL=ref)

  for seed in range(3):
    logp, old, adv, mask, ref, _, _ = _random_batch(seed)
    (total, count), _ = step(logp, old, adv, mask, ref)
    assert np.isfinite(total) and int(count) == mask.sum()
