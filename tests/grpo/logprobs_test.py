"""Tests for rlcs_jax.grpo.logprobs against a naive log_softmax reference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcs_jax.grpo import logprobs

token_logprobs = jax.jit(logprobs.token_logprobs)
token_logprobs_and_entropy = jax.jit(logprobs.token_logprobs_and_entropy)


def _reference(logits, targets, temperature=1.0):
  logp_all = jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, -1)
  logp = jnp.take_along_axis(logp_all, targets[..., None], -1)[..., 0]
  entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, -1)
  return logp, entropy


def _inputs(seed=0, shape=(2, 5, 11), scale=3.0):
  rng = np.random.default_rng(seed)
  logits = jnp.asarray(scale * rng.normal(size=shape), jnp.float32)
  targets = jnp.asarray(rng.integers(0, shape[-1], size=shape[:-1]))
  return logits, targets


def test_hand_computed_uniform_and_two_token_cases():
  # Uniform over 4: log p = −ln 4, H = ln 4. Logits (ln 3, 0): p = (¾, ¼).
  logits = jnp.array(
      [[[0.0, 0.0, 0.0, 0.0]], [[math.log(3.0), 0.0, -jnp.inf, -jnp.inf]]]
  )
  targets = jnp.array([[2], [1]])
  logp, entropy = token_logprobs_and_entropy(logits, targets)
  np.testing.assert_allclose(
      logp, [[-math.log(4)], [math.log(0.25)]], rtol=1e-6
  )
  h_two = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
  np.testing.assert_allclose(entropy, [[math.log(4)], [h_two]], rtol=1e-6)
  # Masked vocabulary entries (−inf) must not turn the gradient into NaN.
  grad = jax.jit(
      jax.grad(
          lambda x: jnp.sum(logprobs.token_logprobs_and_entropy(x, targets)[1])
      )
  )(logits)
  assert np.all(np.isfinite(grad))


def test_matches_reference_with_temperature():
  logits, targets = _inputs()
  for temperature in (1.0, 0.7, 2.0):
    ref_logp, ref_entropy = _reference(logits, targets, temperature)
    logp = token_logprobs(logits, targets, temperature=temperature)
    logp2, entropy = token_logprobs_and_entropy(
        logits, targets, temperature=temperature
    )
    np.testing.assert_allclose(logp, ref_logp, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logp2, ref_logp, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(entropy, ref_entropy, rtol=1e-5, atol=1e-6)
    assert np.all(entropy >= -1e-6)
    assert np.all(entropy <= math.log(logits.shape[-1]) + 1e-5)


@pytest.mark.parametrize("vocab", [11, 512])  # Blocks of 1; two of 256.
def test_gradients_match_reference(vocab):
  logits, targets = _inputs(seed=1, shape=(2, 5, vocab))

  def loss(fn, x, temperature):
    logp, entropy = fn(x, targets, temperature)
    return jnp.sum(logp) + 0.3 * jnp.sum(entropy)

  ours = lambda x, t: loss(
      lambda *a: logprobs.token_logprobs_and_entropy(*a[:2], temperature=a[2]),
      x,
      t,
  )
  ref = lambda x, t: loss(_reference, x, t)
  for t in (1.0, 0.7):
    got = jax.jit(jax.grad(ours, argnums=(0, 1)))(logits, t)
    want = jax.jit(jax.grad(ref, argnums=(0, 1)))(logits, t)
    for g, w in zip(got, want):
      np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_bfloat16_logits_give_float32_and_large_offsets_are_stable():
  logits, targets = _inputs(seed=2)
  logp = token_logprobs(logits.astype(jnp.bfloat16), targets)
  assert logp.dtype == jnp.float32
  ref_logp, _ = _reference(logits.astype(jnp.bfloat16), targets)
  np.testing.assert_allclose(logp, ref_logp, rtol=1e-5, atol=1e-5)
  # A constant shift of 1e4 changes nothing (logsumexp subtracts the max).
  shifted, entropy = token_logprobs_and_entropy(logits + 1e4, targets)
  base, base_entropy = token_logprobs_and_entropy(logits, targets)
  np.testing.assert_allclose(shifted, base, atol=5e-3)
  np.testing.assert_allclose(entropy, base_entropy, atol=5e-3)


def test_out_of_range_padding_ids_stay_finite():
  logits, targets = _inputs(seed=3)
  targets = targets.at[:, -1].set(-1)
  logp = token_logprobs(logits, targets)
  assert np.all(np.isfinite(logp))
  grad = jax.jit(
      jax.grad(lambda x: jnp.sum(logprobs.token_logprobs(x, targets)[:, :-1]))
  )(logits)
  assert np.all(np.isfinite(grad))
