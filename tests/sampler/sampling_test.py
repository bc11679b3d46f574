"""Sampler: matches a naive greedy loop, stop handling, log-probs, retraces."""

import dataclasses
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcs_jax.model.config import PRESETS, ModelConfig
from rlcs_jax.model.transformer import Transformer
from rlcs_jax.sampler import sampling

CFG = ModelConfig(**{**PRESETS["test"], "tie_embeddings": False})
PROMPTS = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [1], [20, 21]]


@pytest.fixture(scope="module")
def params():
  variables = Transformer(CFG).init(
      jax.random.key(0), jnp.zeros((1, 4), jnp.int32)
  )
  return jax.tree.map(lambda x: x * 3.0, nn.meta.unbox(variables)["params"])


@jax.jit
def _forward(params, tokens):
  return Transformer(CFG).apply({"params": params}, tokens)[0]


def _naive_greedy(params, prompt, n):
  """Greedy decoding by a full forward pass per token (no cache)."""
  seq, logps = list(prompt), []
  for _ in range(n):
    logits = _forward(params, jnp.array([seq]))
    logp = jax.nn.log_softmax(logits[0, -1])
    seq.append(int(jnp.argmax(logp)))
    logps.append(float(logp[seq[-1]]))
  return seq[len(prompt) :], logps


@pytest.mark.parametrize("padding", ["left", "right"])
def test_greedy_matches_naive_loop(params, padding):
  cfg = sampling.SamplingConfig(
      max_new_tokens=8, greedy=True, padding=padding, prompt_buckets=(8, 16)
  )
  out = sampling.generate(params, CFG, PROMPTS, cfg, jax.random.key(0))
  for i, p in enumerate(PROMPTS):
    want, want_logp = _naive_greedy(params, p, 8)
    assert out.tokens[i].tolist() == want
    np.testing.assert_allclose(out.logprobs[i], want_logp, atol=1e-4)
  assert out.lengths.tolist() == [8] * 4 and out.truncated.all()


def test_stop_tokens_end_rows_independently(params):
  first = sampling.generate(
      params,
      CFG,
      PROMPTS,
      sampling.SamplingConfig(max_new_tokens=8, greedy=True),
      jax.random.key(0),
  )
  stop = int(first.tokens[1, 2])  # Row 1 stops at its 3rd token.
  out = sampling.generate(
      params,
      CFG,
      PROMPTS,
      sampling.SamplingConfig(
          max_new_tokens=8, greedy=True, stop_ids=(stop,), pad_id=0
      ),
      jax.random.key(0),
  )
  for i in range(4):
    row = first.tokens[i].tolist()
    n = row.index(stop) + 1 if stop in row else 8
    assert out.lengths[i] == n
    assert out.tokens[i, :n].tolist() == row[:n]
    assert (out.tokens[i, n:] == 0).all() and (out.logprobs[i, n:] == 0).all()
    assert out.truncated[i] == (stop not in row)


def test_sampling_is_seeded_and_topk1_is_greedy(params):
  cfg = sampling.SamplingConfig(max_new_tokens=6, temperature=1.0)
  a = sampling.generate(params, CFG, PROMPTS, cfg, jax.random.key(7))
  b = sampling.generate(params, CFG, PROMPTS, cfg, jax.random.key(7))
  c = sampling.generate(params, CFG, PROMPTS, cfg, jax.random.key(8))
  np.testing.assert_array_equal(a.tokens, b.tokens)
  assert not np.array_equal(a.tokens, c.tokens)
  greedy = sampling.generate(
      params,
      CFG,
      PROMPTS,
      sampling.SamplingConfig(max_new_tokens=6, greedy=True),
      jax.random.key(0),
  )
  top1 = sampling.generate(
      params,
      CFG,
      PROMPTS,
      sampling.SamplingConfig(max_new_tokens=6, top_k=1),
      jax.random.key(3),
  )
  np.testing.assert_array_equal(greedy.tokens, top1.tokens)


def test_top_p_keeps_smallest_nucleus():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  cfg = sampling.SamplingConfig(max_new_tokens=1, top_p=0.8)
  kept = sampling._filter_logits(logits, cfg) > -1e30
  assert kept[0].tolist() == [True, True, False, False]
  cfg = sampling.SamplingConfig(max_new_tokens=1, top_p=0.81)
  kept = sampling._filter_logits(logits, cfg) > -1e30
  assert kept[0].tolist() == [True, True, True, False]


@pytest.mark.parametrize("vocab_axis", [1, 0])
def test_inverse_cdf_draw_follows_the_weights(vocab_axis):
  # 600 entries: blocks of 256, the last one partial; zero weights inside
  # and at the ends of blocks, mass on both sides of a block boundary.
  probs = np.zeros(600)
  support = [0, 3, 255, 256, 300, 511, 512, 599]
  probs[support] = [0.05, 0.2, 0.1, 0.15, 0.02, 0.08, 0.3, 0.1]
  n = 20000
  weights = jnp.broadcast_to(jnp.asarray(3.0 * probs, jnp.float32), (n, 600))
  if vocab_axis == 0:
    weights = weights.T
  index, total = sampling._inverse_cdf_draw(
      weights, jax.random.key(0), vocab_axis
  )
  np.testing.assert_allclose(total, 3.0, rtol=1e-5)
  counts = np.bincount(np.asarray(index), minlength=600)
  assert counts[probs == 0].sum() == 0
  # Each frequency within 4.5 binomial standard deviations.
  sd = np.sqrt(n * probs * (1 - probs))
  assert (np.abs(counts - n * probs) <= 4.5 * sd).all(), counts[support]


@pytest.mark.parametrize(
    "cfg",
    [
        sampling.SamplingConfig(max_new_tokens=1, greedy=True),
        sampling.SamplingConfig(max_new_tokens=1, temperature=0.7),
        sampling.SamplingConfig(
            max_new_tokens=1, temperature=0.7, top_k=5, top_p=0.9
        ),
    ],
    ids=["greedy", "sampled", "filtered"],
)
def test_choose_vocab_major_equals_row_major(cfg):
  """`decode` hands the choice [V, B] logits on CPU: same tokens and
  log-probs as from [B, V] (the same uniform number per row), over a
  vocabulary of several draw blocks, a partial one included."""
  logits = 2.0 * jax.random.normal(jax.random.key(1), (6, 700))
  logits = logits.at[0, jnp.array([5, 9])].set(jnp.max(logits) + 1.0)  # Tie.
  rows = [
      jax.jit(sampling._choose, static_argnums=(2, 3))(
          x, jax.random.key(2), cfg, axis
      )
      for x, axis in ((logits, 1), (logits.T, 0))
  ]
  (tok_row, logp_row), (tok_vocab, logp_vocab) = rows
  np.testing.assert_array_equal(tok_vocab, tok_row)
  np.testing.assert_allclose(logp_vocab, logp_row, atol=1e-5)
  want = jax.nn.log_softmax(logits / (1.0 if cfg.greedy else 0.7))
  np.testing.assert_allclose(logp_row, want[jnp.arange(6), tok_row], atol=1e-5)
  if cfg.greedy:
    np.testing.assert_array_equal(tok_row, jnp.argmax(logits, axis=-1))
    assert int(tok_row[0]) == 5  # The first of two maximal entries.


def test_first_above_never_picks_a_zero_weight():
  w = jnp.array([[0.0, 2.0, 0.0, 1.0, 0.0, 0.0]])
  cum = jnp.cumsum(w, axis=-1)
  pick = lambda u: int(sampling._first_above(cum, jnp.array([u]), w)[0])
  assert [pick(u) for u in (0.0, 1.999, 2.0, 2.5)] == [1, 1, 3, 3]
  assert pick(3.0) == 3 and pick(7.0) == 3  # At or past the total.


def test_sampled_logprobs_match_forward(params):
  cfg = sampling.SamplingConfig(max_new_tokens=5, temperature=0.7)
  out = sampling.generate(params, CFG, PROMPTS[:2], cfg, jax.random.key(1))
  for i, p in enumerate(PROMPTS[:2]):
    seq = jnp.array([p + out.tokens[i].tolist()])
    logits, _ = Transformer(CFG).apply({"params": params}, seq)
    logp = jax.nn.log_softmax(logits[0, len(p) - 1 : -1] / 0.7)
    want = jnp.take_along_axis(logp, seq[0, len(p) :, None], -1)[:, 0]
    np.testing.assert_allclose(out.logprobs[i], want, atol=1e-4)


def test_no_retrace_within_bucket(params):
  cfg = sampling.SamplingConfig(
      max_new_tokens=4, greedy=True, prompt_buckets=(16,)
  )
  sampling.generate(params, CFG, [[1, 2]] * 4, cfg, jax.random.key(0))
  decode = chex.assert_max_traces(sampling.decode.__wrapped__, n=1)
  prefill = chex.assert_max_traces(sampling.prefill.__wrapped__, n=1)
  jd = jax.jit(decode, static_argnames=("model_cfg", "cfg"))
  jp = jax.jit(prefill, static_argnames=("model_cfg",))
  for prompts in ([[1, 2]] * 4, [[3, 4, 5, 6, 7]] * 4, [[9] * 11] * 4):
    tokens, valid = sampling.pad_prompts(prompts, 16, 0, "left")
    state = sampling.initial_state(
        *jp(params, tokens, valid, model_cfg=CFG), jax.random.key(0), cfg
    )
    jd(params, state, model_cfg=CFG, cfg=cfg)


def test_prompt_too_long_for_context(params):
  cfg = sampling.SamplingConfig(max_new_tokens=40, greedy=True)
  with pytest.raises(ValueError, match="max_seq_len"):
    sampling.generate(params, CFG, [[1] * 40], cfg, jax.random.key(0))


def test_bf16_compute_casts_matrices_once_and_samples(params, monkeypatch):
  """With bf16 compute, sampling runs on a bf16 copy of the matrices (cast
  once per call, vectors kept) and greedy tokens match the model's own
  bf16 forward pass; with float32 compute the params pass through as is."""
  assert sampling.compute_params(params, CFG) is params
  bf_cfg = ModelConfig(
      **{**PRESETS["test"], "tie_embeddings": False, "dtype": "bfloat16"}
  )
  cast = sampling.compute_params(params, bf_cfg)
  for a, b in zip(jax.tree.leaves(cast), jax.tree.leaves(params)):
    assert a.dtype == (jnp.bfloat16 if b.ndim >= 2 else b.dtype)
  scfg = sampling.SamplingConfig(
      max_new_tokens=6, greedy=True, prompt_buckets=(8,)
  )
  casts = []
  real_cast = sampling._cast_matrices  # pylint: disable=protected-access
  monkeypatch.setattr(
      sampling,
      "_cast_matrices",
      lambda p, dtype: casts.append(dtype) or real_cast(p, dtype),
  )
  out = sampling.generate(params, bf_cfg, PROMPTS[:2], scfg, jax.random.key(0))
  assert casts == [jnp.bfloat16]  # Once for the call, not per token.
  # Reference: one teacher-forced forward pass on the cast params predicts
  # every greedy token (argmax at each generated position).
  for row, prompt in enumerate(PROMPTS[:2]):
    seq = jnp.array([list(prompt) + out.tokens[row].tolist()])
    logits = Transformer(bf_cfg).apply({"params": cast}, seq)[0][0]
    predicted = jnp.argmax(logits[len(prompt) - 1 : -1], axis=-1)
    np.testing.assert_array_equal(out.tokens[row], predicted)


def test_cache_sizes_grow_to_prompt_plus_new_tokens():
  assert sampling.cache_sizes(64, 512) == (192, 320, 576)
  assert sampling.cache_sizes(64, 64) == (128,)  # S/4 and S/2 <= prompt.
  assert sampling.cache_sizes(8, 8) == (16,)
  assert sampling.cache_sizes(8, 150) == (64, 128, 158)


def test_long_decode_grows_the_cache_in_place_and_matches_forward(params):
  """150 tokens after an 8-token bucket run through three loops, the cache
  padded between them (sizes 64, 128, 158). The compiled loop never copies
  a cache array (XLA:CPU copied both caches of every layer twice per token
  when the cache read and the in-place write were not ordered by a data
  dependency), and its greedy tokens and log-probs match one teacher-forced
  forward pass over the result."""
  b, p, t = 2, 8, 150
  long_cfg = dataclasses.replace(CFG, max_seq_len=256)  # Same params.
  cfg = sampling.SamplingConfig(
      max_new_tokens=t, greedy=True, prompt_buckets=(p,)
  )
  tokens, valid = sampling.pad_prompts(PROMPTS[:b], p, 0, "left")
  state = sampling.initial_state(
      *sampling.prefill(params, tokens, valid, model_cfg=long_cfg),
      jax.random.key(0),
      cfg,
  )
  compiled = sampling.decode.lower(
      params, state, model_cfg=long_cfg, cfg=cfg
  ).compile()
  hlo = compiled.as_text()
  k, h = CFG.num_kv_heads, CFG.head_dim
  shapes = set()
  for size in sampling.cache_sizes(p, t):
    shapes |= {f"f32[{b},{k},{h},{size}]", f"f32[{b},{k},{size},{h}]"}
  updates = re.findall(
      r"= (f32\[[\d,]+\])\{[\d,]*\} dynamic-update-slice\(", hlo
  )
  updates += re.findall(
      r"= (f32\[[\d,]+\])\{[\d,]*\} fusion\([^\n]*dynamic.update.slice", hlo
  )
  assert shapes & set(updates), "the cache update was not found"
  copies = re.findall(r"= (f32\[[\d,]+\])\{[\d,]*\} copy\(", hlo)
  assert not shapes & set(copies), sorted(shapes & set(copies))

  out = compiled(params, state)
  assert int(out.step) == t
  for row, prompt in enumerate(PROMPTS[:b]):
    seq = jnp.array([list(prompt) + out.tokens_BT[row].tolist()])
    logits = Transformer(long_cfg).apply({"params": params}, seq)[0][0]
    logp = jax.nn.log_softmax(logits[len(prompt) - 1 : -1])
    np.testing.assert_array_equal(out.tokens_BT[row], jnp.argmax(logp, -1))
    want = jnp.take_along_axis(logp, seq[0, len(prompt) :, None], -1)[:, 0]
    # float32 sums in another order over up to 158 keys: ~1e-4 apart.
    np.testing.assert_allclose(out.logprobs_BT[row], want, atol=5e-4)


def _loop_computations(hlo: str) -> str:
  """The text of every computation a while loop of `hlo` runs (bodies,
  conditions and what they call)."""
  comps = dict(
      re.findall(r"(?m)^%?([\w.\-]+) \([^\n]*\{\n(.*?)\n\}", hlo, re.S)
  )
  refs = lambda text: re.findall(
      r"(?:calls|to_apply|body|condition)=%([\w.\-]+)", text
  )
  todo = re.findall(r"(?:body|condition)=%([\w.\-]+)", hlo)
  seen = set()
  while todo:
    name = todo.pop()
    if name not in seen:
      seen.add(name)
      todo += refs(comps[name])
  return "\n".join(comps[n] for n in seen)


@pytest.mark.parametrize("greedy", [True, False])
def test_decode_loop_keeps_logits_vocab_major(greedy):
  """On CPU a decode step's head puts the weights on the left, so its
  logits come out [V, B]: the loop carries them so and chooses tokens
  from them, with no [B, V] array (a transposing copy per token) inside.
  (A vocabulary of several draw blocks: the draw's cumulative sums inside
  one block may run transposed.)"""
  cfg_v = dataclasses.replace(CFG, vocab_size=600)
  variables = Transformer(cfg_v).init(
      jax.random.key(0), jnp.zeros((1, 4), jnp.int32)
  )
  p = nn.meta.unbox(variables)["params"]
  cfg = sampling.SamplingConfig(
      max_new_tokens=6, greedy=greedy, prompt_buckets=(8,)
  )
  tokens, valid = sampling.pad_prompts(PROMPTS[:3], 8, 0, "left")
  state = sampling.initial_state(
      *sampling.prefill(p, tokens, valid, model_cfg=cfg_v),
      jax.random.key(0),
      cfg,
  )
  hlo = sampling.decode.lower(p, state, model_cfg=cfg_v, cfg=cfg).compile()
  loops = _loop_computations(hlo.as_text())
  assert "f32[600,3]" in loops
  assert "f32[3,600]" not in loops
  out = hlo(p, state)
  assert out.logits.shape == (3, 600)  # [B, V] again after the loop.
  if greedy:  # The last logits are the model's after the last token.
    for row, prompt in enumerate(PROMPTS[:3]):
      seq = jnp.array([list(prompt) + out.tokens_BT[row].tolist()])
      logits = Transformer(cfg_v).apply({"params": p}, seq)[0][0, -1]
      np.testing.assert_allclose(out.logits[row], logits, atol=1e-4)


@pytest.mark.parametrize("padding", ["left", "right"])
def test_prefill_logits_at_last_prompt_token_only(padding):
  """Prefill's logits are the full forward's at each row's last valid
  prompt token, and the compiled prefill never holds [B, P, V] logits."""
  # Shapes no weight has: a vocabulary of 96 and 4 x 10 prompt slots.
  cfg = dataclasses.replace(CFG, vocab_size=96)
  model = Transformer(cfg)
  params = nn.meta.unbox(
      model.init(jax.random.key(1), jnp.zeros((1, 4), jnp.int32))
  )["params"]
  tokens, valid = sampling.pad_prompts(PROMPTS, 10, 0, padding)
  logits, _ = sampling.prefill(params, tokens, valid, model_cfg=cfg)
  for row, prompt in enumerate(PROMPTS):
    want = model.apply({"params": params}, jnp.array([prompt]))[0][0, -1]
    np.testing.assert_allclose(logits[row], want, atol=1e-4)
  hlo = (
      sampling.prefill.lower(params, tokens, valid, model_cfg=cfg)
      .compile()
      .as_text()
  )
  b, p = tokens.shape
  assert f"f32[{b},96]" in hlo or f"f32[{b},1,96]" in hlo
  assert f"f32[{b},{p},96]" not in hlo and f"f32[{b * p},96]" not in hlo


@pytest.mark.parametrize("padding", ["left", "right"])
def test_group_prefill_equals_per_row_prefill(params, padding):
  r = 3
  cfg = sampling.SamplingConfig(
      max_new_tokens=6, temperature=1.0, padding=padding, prompt_buckets=(8,)
  )
  rows = [p for p in PROMPTS for _ in range(r)]
  tokens, valid = sampling.pad_prompts(rows, 8, cfg.pad_id, padding)
  outs = [
      sampling.generate_arrays(
          params,
          tokens,
          valid,
          jax.random.key(3),
          model_cfg=CFG,
          cfg=cfg,
          group_size=g,
      )
      for g in (1, r)
  ]
  (tok1, logp1, len1, _), (tokr, logpr, lenr, _) = outs
  np.testing.assert_array_equal(tokr, tok1)
  np.testing.assert_array_equal(lenr, len1)
  np.testing.assert_allclose(logpr, logp1, atol=1e-4)
  # Sampled, not greedy: a group's rows differ.
  assert len({tuple(t) for t in np.asarray(tok1)[:r].tolist()}) > 1
