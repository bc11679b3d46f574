"""Transformer: causality, cached decode == full forward, padding invariance."""

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcs_jax import memory_plan
from rlcs_jax.model.config import PRESETS, ModelConfig
from rlcs_jax.model import attention
from rlcs_jax.model import matmul as matmul_lib
from rlcs_jax.model import transformer
from rlcs_jax.model.kv_cache import init_cache
from rlcs_jax.model.transformer import Transformer, output_logits

VARIANTS = {
    "llama_tied": {},
    "qwen2_untied_bias": dict(tie_embeddings=False, qkv_bias=True),
    "qwen3_qk_norm": dict(tie_embeddings=False, qk_norm=True),
}


class _Jitted:
  """A `Transformer` whose `apply` is jitted. Run eagerly, every op of a
  forward pass compiles apart: most of these tests' time on CPU."""

  def __init__(self, module: Transformer):
    self.module = module
    self.apply = jax.jit(
        module.apply, static_argnames=("return_hidden", "return_prefix")
    )


@functools.partial(jax.jit, static_argnames="module")
def _init_params(key, module: Transformer):
  variables = module.init(key, jnp.zeros((1, 4), jnp.int32))
  params = nn.meta.unbox(variables)["params"]
  # Non-zero biases / norms so every parameter matters.
  return jax.tree.map(
      lambda x: x + 0.1 * jax.random.normal(jax.random.key(x.size), x.shape),
      params,
  )


def _model(**kw):
  cfg = ModelConfig(**{**PRESETS["test"], **kw})
  model = Transformer(cfg)
  return cfg, _Jitted(model), _init_params(jax.random.key(0), model)


def _cached_decode(cfg, params, tokens, slots: int, prompt: int = 4):
  """Logits of `tokens` from a `prompt`-token prefill into a cache of
  `slots` then one token per step; returns (logits, cache, jitted step)."""
  step = jax.jit(Transformer(cfg).apply)
  cache = init_cache(cfg, tokens.shape[0], slots)
  logits, cache = step({"params": params}, tokens[:, :prompt], cache=cache)
  steps = [logits]
  for t in range(prompt, tokens.shape[1]):
    logits, cache = step({"params": params}, tokens[:, t : t + 1], cache=cache)
    steps.append(logits)
  return jnp.concatenate(steps, 1), cache, step


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
  logits, cache, _ = _cached_decode(cfg, params, tokens, slots=16)
  np.testing.assert_allclose(logits, full, atol=2e-5)
  assert int(cache["end"]) == 10


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_sampling_layout_matches_canonical(variant):
  """`to_sampling_layout` params in `Transformer(transposed_weights=True)`
  give the canonical model's logits, for prefill-sized row counts (x @ w^T)
  and decode steps (weights on the left: every 2-D dot of a compiled step
  has the batch as its output's last axis); the declared matrices are the
  canonical ones with their axes (and axis names) permuted."""
  cfg, model, params = _model(**VARIANTS[variant])
  sparams = transformer.to_sampling_layout(params)
  smodel = Transformer(cfg, transposed_weights=True)
  boxed = [
      jax.eval_shape(m.init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32))
      for m in (model.module, smodel)
  ]
  for leaf, canon, spec, canon_spec in zip(
      jax.tree.leaves(sparams),
      jax.tree.leaves(params),
      *[
          jax.tree.leaves(nn.get_partition_spec(b)["params"])
          for b in boxed[::-1]
      ],
  ):
    assert dict(zip(spec, leaf.shape)) == dict(zip(canon_spec, canon.shape))
  assert jax.tree.map(lambda x: x.shape, sparams) == jax.tree.map(
      lambda x: x.shape, nn.meta.unbox(boxed[1])["params"]
  )

  tokens = jax.random.randint(jax.random.key(2), (2, 24), 0, cfg.vocab_size)
  full, _ = model.apply({"params": params}, tokens)  # 48 rows.
  np.testing.assert_allclose(
      smodel.apply({"params": sparams}, tokens)[0], full, atol=2e-5
  )
  step = jax.jit(smodel.apply)
  logits, cache = step(
      {"params": sparams}, tokens[:, :20], cache=init_cache(cfg, 2, 24)
  )
  steps = [logits]
  for t in range(20, 24):
    logits, cache = step({"params": sparams}, tokens[:, t : t + 1], cache=cache)
    steps.append(logits)
  np.testing.assert_allclose(jnp.concatenate(steps, 1), full, atol=2e-5)
  hlo = step.lower({"params": sparams}, tokens[:, :1], cache=cache).compile()
  dots = re.findall(r"= f32\[(\d+),(\d+)\]\{[^}]*\} dot\(", hlo.as_text())
  assert dots and all(int(m) == 2 for _, m in dots), dots


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


@pytest.mark.parametrize("transpose_w", [False, True])
def test_mixed_matmul_gradients(transpose_w):
  """bf16 matmul: float32 gradients equal to the bf16-input reference."""
  kx, kw, kg = jax.random.split(jax.random.key(5), 3)
  x = jax.random.normal(kx, (6, 16))
  w = jax.random.normal(kw, (24, 16) if transpose_w else (16, 24))
  g = jax.random.normal(kg, (6, 24))
  f = lambda x, w: jnp.sum(
      matmul_lib.matmul(x, w, jnp.bfloat16, transpose_w) * g
  )
  dx, dw = jax.grad(f, argnums=(0, 1))(x, w)
  assert dx.dtype == dw.dtype == jnp.float32
  # Reference: the same products with bf16-rounded inputs, in float64.
  r = lambda a: np.asarray(a.astype(jnp.bfloat16), np.float64)
  wk = r(w).T if transpose_w else r(w)  # [K, N]
  np.testing.assert_allclose(dx, r(g) @ wk.T, rtol=1e-5, atol=1e-5)
  dw_ref = r(x).T @ r(g)
  np.testing.assert_allclose(dw, dw_ref.T if transpose_w else dw_ref, 1e-5)
  # Every matmul of the backward pass takes bf16 operands (no f32 upcast).
  jaxpr = jax.make_jaxpr(jax.grad(f, argnums=(0, 1)))(x, w)
  inner = [
      e
      for eq in jaxpr.jaxpr.eqns
      for e in _sub_eqns(eq)
      if e.primitive.name == "dot_general"
  ]
  assert len(inner) == 3, inner
  for e in inner:
    assert all(v.aval.dtype == jnp.bfloat16 for v in e.invars), e
  # ...and XLA:CPU keeps them bf16: a weight gradient written as a dot over
  # the leading axis is upcast to float32 by the compiler.
  hlo = jax.jit(jax.grad(f, argnums=(0, 1))).lower(x, w).compile().as_text()
  types = dict(re.findall(r"(%[\w.\-]+) = (\w+)\[", hlo))
  dots = re.findall(r"= \w+\[[^\]]*\]\S* dot\((%[\w.\-]+), (%[\w.\-]+)\)", hlo)
  assert len(dots) == 2, hlo  # dx and dw (the forward product is unused).
  assert all(types[a] == types[b] == "bf16" for a, b in dots), dots


def test_head_input_gradient_in_contraction_blocks():
  """The bf16 input gradient of an output-major matmul with a long
  contraction (the tied head's [M, V] x [V, D]) is a sum of dots over
  blocks of the contraction on CPU, with the single dot's values."""
  v = matmul_lib._LONG_CONTRACTION
  kx, kw, kg = jax.random.split(jax.random.key(6), 3)
  x = jax.random.normal(kx, (4, 8))
  w = jax.random.normal(kw, (v, 8))  # [N, K]: output-major, N = v.
  g = jax.random.normal(kg, (4, v))
  f = lambda x, w, g: jnp.sum(matmul_lib.matmul(x, w, jnp.bfloat16, True) * g)
  r = lambda a: np.asarray(a.astype(jnp.bfloat16), np.float64)
  dx = jax.grad(f)(x, w, g)
  np.testing.assert_allclose(dx, r(g) @ r(w), rtol=1e-4, atol=1e-3)
  hlo = jax.jit(jax.grad(f)).lower(x, w, g).compile().as_text()
  dots = re.findall(r"= \w+\[[^\]]*\]\S* dot\(", hlo)
  assert len(dots) == v // matmul_lib._CONTRACTION_BLOCK, len(dots)


def _sub_eqns(eqn):
  yield eqn
  for p in eqn.params.values():
    for sub in p if isinstance(p, (list, tuple)) else [p]:
      jx = getattr(sub, "jaxpr", sub)
      for e in getattr(jx, "eqns", []):
        yield from _sub_eqns(e)


def test_bf16_compute_gradients_close_to_f32():
  cfg, model, params = _model()
  tokens = jax.random.randint(jax.random.key(6), (2, 8), 0, cfg.vocab_size)
  bf = Transformer(ModelConfig(**{**PRESETS["test"], "dtype": "bfloat16"}))
  loss = lambda m: lambda p: jnp.mean(
      jax.nn.log_softmax(m.apply({"params": p}, tokens)[0])[..., 0]
  )
  ref = jax.grad(loss(model))(params)
  got = jax.grad(loss(bf))(params)
  for (path, a), b in zip(
      jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(ref)
  ):
    assert a.dtype == jnp.float32, path
    scale = float(jnp.max(jnp.abs(b))) + 1e-6
    assert float(jnp.max(jnp.abs(a - b))) < 0.05 * scale, path


def _einsum_attention(q, k, v, mask):
  """The attention `attention.self_attention` replaced, float32 autodiff."""
  return attention.segment_attention(q, [(k, v, mask, False)], jnp.float32)[0]


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("bfloat16", 2e-2)])
def test_self_attention_matches_autodiff(dtype, tol):
  b, l, n, k, h = 2, 7, 6, 2, 12  # 1/sqrt(12) is not a power of two.
  ks = jax.random.split(jax.random.key(3), 4)
  q, w = (jax.random.normal(x, (b, l, n, h)) for x in ks[:2])
  kk, v = (jax.random.normal(x, (b, l, k, h)) for x in ks[2:])
  # Row 0 is left-padded by 2: its first two queries see no key at all.
  valid = jnp.ones((b, l), bool).at[0, :2].set(False)
  mask = jnp.tril(jnp.ones((l, l), bool))[None] & valid[:, None, :]
  got_f = lambda q, kk, v: jnp.sum(
      attention.self_attention(q, kk, v, mask, jnp.dtype(dtype)) * w
  )
  ref_f = lambda q, kk, v: jnp.sum(_einsum_attention(q, kk, v, mask) * w)
  pairs = [
      (
          attention.self_attention(q, kk, v, mask, jnp.dtype(dtype)),
          _einsum_attention(q, kk, v, mask),
      )
  ]
  got_grads = jax.jit(jax.grad(got_f, (0, 1, 2)))(q, kk, v)
  pairs += zip(got_grads, jax.jit(jax.grad(ref_f, (0, 1, 2)))(q, kk, v))
  for got, ref in pairs:
    assert got.dtype == jnp.float32
    scale = float(jnp.max(jnp.abs(ref)))
    np.testing.assert_allclose(got, ref, atol=tol * scale, rtol=0)
  # The queries that see no key get no gradient.
  assert float(jnp.max(jnp.abs(got_grads[0][0, :2]))) == 0.0
  # Gradients come in the inputs' dtypes.
  lo = [x.astype(jnp.bfloat16) for x in (q, kk, v)]
  grads = jax.jit(jax.grad(got_f, (0, 1, 2)))(*lo)
  assert all(g.dtype == jnp.bfloat16 for g in grads)


def test_bf16_gradient_dots_take_bf16_operands():
  # JAX's transposes of the einsum attention contracted leading axes, which
  # XLA:CPU ran as float32 dots (converting [.., L, S] operands first).
  cfg = ModelConfig(**{**PRESETS["test"], "dtype": "bfloat16"})
  model = Transformer(cfg)
  tokens = jax.random.randint(jax.random.key(6), (2, 8), 0, cfg.vocab_size)
  params = nn.meta.unbox(model.init(jax.random.key(0), tokens))["params"]
  loss = lambda p: jnp.mean(model.apply({"params": p}, tokens)[0])
  hlo = jax.jit(jax.grad(loss)).lower(params).compile().as_text()
  types = dict(re.findall(r"%([\w.\-]+) = (\w+)\[", hlo))
  dots = re.findall(r"= \w+\[[^\]]*\]\S* dot\(%([\w.\-]+), %([\w.\-]+)\)", hlo)
  assert len(dots) > 20
  for a, b in dots:
    assert (types[a], types[b]) == ("bf16", "bf16"), (a, b)


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


def test_cache_dtype_defaults_to_the_compute_dtype():
  """`cache_dtype=""` (the default) is the compute dtype; an explicit one
  wins; a bad one fails naming the dtypes. With bf16 compute the default
  cache's decode is the full bf16 forward's attention (keys and values
  rounded to bf16 as the forward rounds them), over five times closer to
  that forward than decoding over a float32 cache."""
  base = ModelConfig(**PRESETS["test"])
  bf16 = ModelConfig(**{**PRESETS["test"], "dtype": "bfloat16"})
  assert base.cache_dtype == bf16.cache_dtype == ""
  assert base.kv_dtype == jnp.float32 and bf16.kv_dtype == jnp.bfloat16
  f32_cache = ModelConfig(
      **{**PRESETS["test"], "dtype": "bfloat16", "cache_dtype": "float32"}
  )
  assert f32_cache.kv_dtype == jnp.float32
  assert init_cache(bf16, 1, 4)["layers"][0]["k"].dtype == jnp.bfloat16
  assert memory_plan.kv_cache_bytes(bf16, 1, 2, 8) * 2 == (
      memory_plan.kv_cache_bytes(f32_cache, 1, 2, 8)
  )
  with pytest.raises(ValueError, match="unknown dtype 'int8'"):
    ModelConfig(**{**PRESETS["test"], "cache_dtype": "int8"})

  _, _, params = _model()
  tokens = jax.random.randint(jax.random.key(7), (2, 12), 0, bf16.vocab_size)
  full, _ = Transformer(bf16).apply({"params": params}, tokens)
  errors = {}
  for cfg in (bf16, f32_cache):
    logits, _, _ = _cached_decode(cfg, params, tokens, slots=16)
    errors[cfg.kv_dtype] = float(jnp.max(jnp.abs(logits - full)))
  # 0.0014 against 0.020 when written.
  assert 5 * errors[jnp.bfloat16] < errors[jnp.float32], errors


def test_bf16_cache_decode():
  """With a bf16 cache, cached decode stays close to the full bf16 forward,
  and a compiled decode step never makes a float32 copy of a cache layer:
  the attention products read the cache as bf16 and the write converts no
  values (both once converted the whole cache for every token)."""
  cfg = ModelConfig(
      **{**PRESETS["test"], "dtype": "bfloat16", "cache_dtype": "bfloat16"}
  )
  _, _, params = _model()
  tokens = jax.random.randint(jax.random.key(7), (2, 10), 0, cfg.vocab_size)
  full, _ = Transformer(cfg).apply({"params": params}, tokens)
  logits, cache, step = _cached_decode(cfg, params, tokens, slots=24)
  layer = cache["layers"][0]
  assert layer["k"].dtype == layer["v"].dtype == jnp.bfloat16
  np.testing.assert_allclose(logits, full, atol=0.05)
  hlo = (
      step.lower({"params": params}, tokens[:, :1], cache=cache)
      .compile()
      .as_text()
  )
  for x in (layer["k"], layer["v"]):
    f32_copy = "f32[" + ",".join(map(str, x.shape)) + "]"
    assert f32_copy not in hlo, f32_copy


def test_rope_angles_looked_up_once_per_step():
  """The rotary angles are looked up in a table of the positions below a
  static bound (the same values as computed from the positions), once per
  forward pass: a compiled decode step and a training forward hold at most
  one sine and one cosine, not one per layer's rotated q and k (XLA:CPU
  fused those into each consumer, per element)."""
  positions = jnp.array([[0, 3, 7], [2, 2, 9]])
  direct = transformer.rope_angles(positions, 16, 10000.0)
  table = transformer.rope_angles(positions, 16, 10000.0, table_size=10)
  for a, b in zip(direct, table):
    assert a.shape == b.shape == (2, 3, 1, 8)
    np.testing.assert_allclose(a, b, atol=1e-6)

  cfg, model, params = _model()
  assert cfg.num_layers >= 2
  tokens = jax.random.randint(jax.random.key(3), (2, 6), 0, cfg.vocab_size)
  step = jax.jit(model.apply)
  _, cache = step({"params": params}, tokens, cache=init_cache(cfg, 2, 12))
  programs = {
      "decode step": step.lower({"params": params}, tokens[:, :1], cache=cache),
      "forward": step.lower({"params": params}, tokens),
  }
  for what, lowered in programs.items():
    hlo = lowered.compile().as_text()
    for op in (" cosine(", " sine("):
      assert hlo.count(op) <= 1, (what, op, hlo.count(op))


def test_remat_gradients_equal_plain_gradients():
  cfg = ModelConfig(**PRESETS["test"])
  params = nn.meta.unbox(
      Transformer(cfg).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
  )["params"]
  tokens = jax.random.randint(jax.random.key(1), (2, 8), 0, cfg.vocab_size)
  valid = jnp.arange(8)[None, :] >= jnp.array([[0], [3]])  # Left padding.

  @jax.jit
  def grads(p):
    def loss(p, c):
      logits = Transformer(c).apply({"params": p}, tokens, valid_BL=valid)[0]
      return jnp.sum(jnp.where(valid[..., None], logits, 0.0) ** 2)

    return [
        jax.grad(loss)(p, ModelConfig(**{**PRESETS["test"], "remat": r}))
        for r in (False, True)
    ]

  plain, remat = grads(params)
  for a, b in zip(jax.tree.leaves(remat), jax.tree.leaves(plain)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
