"""Scalar BT reward model: loss values, gradients, last-token read, features."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcs_jax.data.pipeline import PromptTooLongError
from rlcs_jax.genrm import scalar_rm
from rlcs_jax.model.config import PRESETS, ModelConfig
from rlcs_jax.model.transformer import Transformer
from rlcs_jax.tokenizer import Tokenizer
from rlcs_jax.trainers import reward_model


class CharTokenizer(Tokenizer):
  """One id per character; pad=0, bos=2, eos=3."""

  vocab_size, pad_id, unk_id, bos_id, eos_id = 128, 0, 1, 2, 3

  def encode(self, text):
    return [4 + ord(ch) % 120 for ch in text]

  def decode(self, ids):
    return "".join(chr(i - 4) for i in ids if i >= 4)


# Jitted (eager dispatch of a whole forward is slow on a busy CPU).
_score = jax.jit(scalar_rm.score, static_argnums=1)


@functools.partial(jax.jit, static_argnums=0)
def _last_hidden(cfg, backbone, tokens_1L):
  h, _ = Transformer(cfg).apply(
      {"params": backbone}, tokens_1L, return_hidden=True
  )
  return h[0, -1]


@pytest.fixture(scope="module")
def model():
  cfg = ModelConfig(**{**PRESETS["test"], "max_seq_len": 256})
  init = jax.jit(
      lambda k: Transformer(cfg).init(k, jnp.zeros((1, 4), jnp.int32))
  )
  backbone = nn.meta.unbox(init(jax.random.key(0)))["params"]
  params = scalar_rm.init_params(backbone, cfg)
  params["head"] = {
      "kernel": jax.random.normal(jax.random.key(1), (cfg.d_model,)),
      "bias": jnp.float32(0.3),
  }
  return cfg, params


def test_bt_loss_hand_computed():
  (s, c), m = scalar_rm.bt_loss(
      jnp.array([2.0, 0.0, 1.0]), jnp.array([0.0, 0.0, 3.0])
  )
  want = [math.log1p(math.exp(-2.0)), math.log(2.0), math.log1p(math.exp(2))]
  np.testing.assert_allclose(float(s), sum(want), rtol=1e-6)
  assert float(c) == 3
  assert want[0] == pytest.approx(0.126928, abs=1e-6)
  # Correct, tie (0.5), wrong.
  np.testing.assert_allclose(float(m["accuracy"][0]), 1.5)
  np.testing.assert_allclose(float(m["margin"][0]), 2.0 + 0.0 - 2.0)
  (s, c), m = scalar_rm.bt_loss(
      jnp.array([2.0, 0.0]), jnp.array([0.0, 5.0]), jnp.array([1.0, 0.0])
  )
  np.testing.assert_allclose(float(s), want[0], rtol=1e-6)
  assert float(c) == 1 and float(m["accuracy"][0]) == 1.0


def test_bt_gradient_pushes_chosen_up_and_rejected_down():
  def loss(rc, rr):
    return scalar_rm.bt_loss(rc, rr)[0][0]

  g_c, g_r = jax.grad(loss, argnums=(0, 1))(jnp.array([2.0]), jnp.array([0.0]))
  sig = 1.0 / (1.0 + math.exp(2.0))  # σ(r_r − r_c)
  np.testing.assert_allclose(np.asarray(g_c), [-sig], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(g_r), [sig], rtol=1e-6)


def test_score_reads_last_valid_token(model):
  cfg, params = model
  ids = np.asarray(
      jax.random.randint(jax.random.key(2), (2, 9), 4, cfg.vocab_size)
  )
  lengths = [5, 9]
  # Reference: head on the final hidden state of the unpadded sequence.
  head = params["head"]
  want = [
      float(
          _last_hidden(cfg, params["backbone"], ids[row : row + 1, :n])
          @ head["kernel"]
          + head["bias"]
      )
      for row, n in enumerate(lengths)
  ]

  def right_padded(length, pad):
    tokens = np.full((2, length), pad, np.int32)
    valid = np.zeros((2, length), bool)
    for row, n in enumerate(lengths):
      tokens[row, :n] = ids[row, :n]
      valid[row, :n] = True
    return tokens, valid

  for length, pad in ((9, 0), (16, 0), (16, 77)):
    got = _score(params, cfg, *right_padded(length, pad))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)

  # Left padding reads the same token.
  tokens = np.zeros((2, 16), np.int32)
  for row, n in enumerate(lengths):
    tokens[row, 16 - n :] = ids[row, :n]
  got = _score(params, cfg, tokens, tokens > 0)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)

  # Changing the last valid token of row 0 changes its score only.
  tokens, valid = right_padded(16, 0)
  tokens[0, 4] = 4 + (tokens[0, 4] + 1 - 4) % (cfg.vocab_size - 4)
  got = np.asarray(_score(params, cfg, tokens, valid))
  assert abs(got[0] - want[0]) > 1e-4
  np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-5)


def test_zero_head_scores_bias():
  cfg = ModelConfig(**PRESETS["test"])
  head = scalar_rm.init_head(cfg)
  assert head["kernel"].shape == (cfg.d_model,) and head["bias"].shape == ()
  assert not np.any(np.asarray(head["kernel"]))


def _record(prompt, r1, r2, label):
  return {
      "id": "pairs-7",
      "prompt": prompt,
      "response_1": r1,
      "response_2": r2,
      "label": label,
  }


def test_featurize_pair_orders_by_label_and_truncates():
  tok = CharTokenizer()
  prompt_ids = tok.encode_prompt("Go.")
  n = len(prompt_ids)
  feats = scalar_rm.featurize_pair(tok, _record("Go.", "ab", "xyz", 2), n + 6)
  chosen = prompt_ids + tok.encode("xyz") + [tok.eos_id]
  rejected = prompt_ids + tok.encode("ab") + [tok.eos_id]
  np.testing.assert_array_equal(
      feats["chosen_tokens"], chosen + [0] * (n + 6 - len(chosen))
  )
  np.testing.assert_array_equal(feats["chosen_valid"].sum(), len(chosen))
  np.testing.assert_array_equal(
      feats["rejected_tokens"][: len(rejected)], rejected
  )
  assert feats["rejected_valid"].sum() == len(rejected)
  # Too long: the response tail (and eos) is cut, the prompt kept.
  feats = scalar_rm.featurize_pair(
      tok, _record("Go.", "abcdefgh", "x", 1), n + 3
  )
  np.testing.assert_array_equal(
      feats["chosen_tokens"], prompt_ids + tok.encode("abc")
  )
  assert feats["chosen_valid"].all()


def test_featurize_pair_names_record_when_prompt_does_not_fit():
  tok = CharTokenizer()
  n = len(tok.encode_prompt("A long prompt."))
  with pytest.raises(PromptTooLongError, match="pairs-7"):
    scalar_rm.featurize_pair(tok, _record("A long prompt.", "a", "b", 1), n)


def test_scorer_matches_score_and_reuses_shapes(model):
  cfg, params = model
  tok = CharTokenizer()
  scorer = reward_model.make_scorer(params, cfg, tok, batch_size=4)
  assert scorer.buckets == (64, 128, 192, 256)
  prompts = ["Hi.", "Tell a tale.", "Go.", "Hi.", "Once", "Why?"]
  responses = ["a", "bb bb", "cccccc", "d" * 80, "e", "ff"]
  got = scorer(prompts, responses)
  # Reference: every row right padded to the model length, in one batch.
  rows = [
      scalar_rm.pad_right(
          scalar_rm.encode_scored(tok, p, r, cfg.max_seq_len),
          cfg.max_seq_len,
          tok.pad_id,
      )
      for p, r in zip(prompts, responses)
  ]
  tokens, valid = (np.stack(x) for x in zip(*rows))
  want = np.asarray(_score(params, cfg, tokens, valid))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert scorer.num_traces == 2  # Buckets 64 and 128.
  # New row counts and lengths within the same buckets compile nothing new.
  scorer(prompts[:3], ["x", "yy", "zzz"])
  scorer(prompts + prompts, responses[::-1] + responses)
  assert scorer.num_traces == 2
