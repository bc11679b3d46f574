"""Transformer: causality, cached decode == full forward, padding invariance."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcs_jax.model.config import PRESETS, ModelConfig
from rlcs_jax.model.transformer import Transformer, init_cache, output_logits

VARIANTS = {
    "llama_tied": {},
    "qwen2_untied_bias": dict(tie_embeddings=False, qkv_bias=True),
    "qwen3_qk_norm": dict(tie_embeddings=False, qk_norm=True),
}


def _model(**kw):
  cfg = ModelConfig(**{**PRESETS["test"], **kw})
  model = Transformer(cfg)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))
  params = nn.meta.unbox(variables)["params"]
  # Non-zero biases / norms so every parameter matters.
  params = jax.tree.map(
      lambda x: x + 0.1 * jax.random.normal(jax.random.key(x.size), x.shape),
      params,
  )
  return cfg, model, params


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_causal(variant):
  cfg, model, params = _model(**VARIANTS[variant])
  tokens = jax.random.randint(jax.random.key(1), (2, 12), 0, cfg.vocab_size)
  base, _ = model.apply({"params": params}, tokens)
  changed = tokens.at[:, 7].set((tokens[:, 7] + 1) % cfg.vocab_size)
  out, _ = model.apply({"params": params}, changed)
  np.testing.assert_allclose(out[:, :7], base[:, :7], atol=1e-6)
  assert np.abs(np.asarray(out[:, 7:] - base[:, 7:])).max() > 1e-3


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cached_decode_equals_full_forward(variant):
  cfg, model, params = _model(**VARIANTS[variant])
  tokens = jax.random.randint(jax.random.key(2), (2, 10), 0, cfg.vocab_size)
  full, _ = model.apply({"params": params}, tokens)
  cache = init_cache(cfg, 2, 16)
  logits, cache = model.apply({"params": params}, tokens[:, :4], cache=cache)
  steps = [logits]
  for t in range(4, 10):
    logits, cache = model.apply(
        {"params": params}, tokens[:, t : t + 1], cache=cache
    )
    steps.append(logits)
  np.testing.assert_allclose(jnp.concatenate(steps, 1), full, atol=2e-5)
  assert int(cache["end"]) == 10


def test_left_padding_does_not_change_logits():
  cfg, model, params = _model()
  seq = jax.random.randint(jax.random.key(3), (1, 6), 0, cfg.vocab_size)
  padded = jnp.concatenate([jnp.zeros((1, 3), jnp.int32), seq], axis=1)
  valid = jnp.arange(9)[None] >= 3
  ref, _ = model.apply({"params": params}, seq)
  out, _ = model.apply({"params": params}, padded, valid_BL=valid)
  np.testing.assert_allclose(out[:, 3:], ref, atol=2e-5)


def test_hidden_plus_head_equals_logits():
  for kw in ({}, dict(tie_embeddings=False)):
    cfg, model, params = _model(**kw)
    tokens = jnp.ones((2, 5), jnp.int32)
    logits, _ = model.apply({"params": params}, tokens)
    hidden, _ = model.apply({"params": params}, tokens, return_hidden=True)
    np.testing.assert_allclose(
        output_logits(params, cfg, hidden), logits, atol=1e-5
    )


def test_bf16_compute_close_to_f32():
  cfg, model, params = _model()
  tokens = jax.random.randint(jax.random.key(4), (2, 8), 0, cfg.vocab_size)
  ref, _ = model.apply({"params": params}, tokens)
  bf = Transformer(ModelConfig(**{**PRESETS["test"], "dtype": "bfloat16"}))
  out, _ = bf.apply({"params": params}, tokens)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, ref, atol=0.1)


def test_every_param_has_logical_axes():
  cfg = ModelConfig(
      **{
          **PRESETS["test"],
          "tie_embeddings": False,
          "qkv_bias": True,
          "qk_norm": True,
      }
  )
  boxed = jax.eval_shape(
      Transformer(cfg).init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32)
  )
  specs = nn.get_partition_spec(boxed)["params"]
  shapes = nn.meta.unbox(boxed)["params"]
  for spec, shape in zip(jax.tree.leaves(specs), jax.tree.leaves(shapes)):
    assert len(spec) == len(shape.shape) and all(s is not None for s in spec)


def test_config_validation():
  with pytest.raises(ValueError, match="num_kv_heads"):
    ModelConfig(**{**PRESETS["test"], "num_kv_heads": 3})
  with pytest.raises(ValueError, match="unknown dtype"):
    ModelConfig(**{**PRESETS["test"], "dtype": "float8"})
  cfg = ModelConfig(**PRESETS["smollm2_135m"])
  assert 134e6 < cfg.num_params() < 136e6
