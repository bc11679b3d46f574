"""Judge: verdict token ids and verdict-position logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcs_jax import tokenizer as tok_lib
from rlcs_jax.genrm import judge as judge_lib
from rlcs_jax.genrm import prompts as genrm_prompts
from rlcs_jax.model.config import PRESETS, ModelConfig
from rlcs_jax.model.transformer import Transformer
from rlcs_jax.sampler import sampling


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  texts = [
      genrm_prompts.build_judge_prompt(f"ctx {i}", "one", "two")
      + "\nVerdict: [[1]]\nVerdict: [[2]]"
      for i in range(50)
  ]
  return tok_lib.SentencePieceTokenizer(
      tok_lib.train_sentencepiece(
          texts, str(tmp_path_factory.mktemp("t") / "sp"), vocab_size=400
      )
  )


def test_verdict_token_ids_distinguish(tok):
  one, two = judge_lib.verdict_token_ids(tok)
  assert one != two
  assert tok.decode([one]).strip() == "1" and tok.decode([two]).strip() == "2"


def test_verdict_logits_match_forward(tok):
  cfg = ModelConfig(
      **{**PRESETS["test"], "vocab_size": tok.vocab_size, "max_seq_len": 1024}
  )
  params = Transformer(cfg).init(
      jax.random.key(0), jnp.zeros((1, 4), jnp.int32)
  )["params"]
  params = jax.tree.map(
      lambda x: getattr(x, "value", x),
      params,
      is_leaf=lambda x: hasattr(x, "value"),
  )
  scfg = sampling.SamplingConfig(
      max_new_tokens=4, greedy=True, prompt_buckets=(512, 1024)
  )
  j = judge_lib.Judge(params, cfg, tok, scfg, chunk_size=2)
  prompts = ["p one", "p two", "p three"]
  responses = ["Good.\nVerdict: [[2]]", "no verdict", "x\nVerdict: [[1]]"]
  logits = j.verdict_logits(prompts, responses)
  assert np.isnan(logits[1]).all() and not np.isnan(logits[[0, 2]]).any()
  ids = tok.encode_prompt(prompts[0]) + tok.encode("Good.\nVerdict: [[")
  full, _ = Transformer(cfg).apply({"params": params}, jnp.array([ids]))
  np.testing.assert_allclose(
      logits[0], full[0, -1, list(j.verdict_ids)], atol=1e-4
  )
