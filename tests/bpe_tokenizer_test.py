"""Byte-level BPE tokenizer on a hand-built vocabulary (no model files)."""

import random

import pytest

from rlcs_jax import bpe_tokenizer
from rlcs_jax.bpe_tokenizer import BPETokenizer

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he", "i n", "Ġ Ġ", "ĠĠ Ġ", "' s", "Ġ 1"]
SMOL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] "
    "!= 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant "
    "named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# A ChatML template whose system text is not a literal (Qwen2 style).
NO_DEFAULT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' "
    "+ message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def vocab():
  tokens = SPECIALS + list(bpe_tokenizer.bytes_to_unicode().values())
  for merge in MERGES:
    tokens.append(merge.replace(" ", ""))
  types = [bpe_tokenizer.TOKEN_CONTROL] * len(SPECIALS) + [
      bpe_tokenizer.TOKEN_NORMAL
  ] * (len(tokens) - len(SPECIALS))
  return tokens, types


def make(pre="smollm", template=SMOL_TEMPLATE, **kwargs):
  tokens, types = vocab()
  args = dict(
      token_types=types,
      eos_id=2,
      pad_id=2,
      unk_id=0,
      pre=pre,
      chat_template=template,
  )
  args.update(kwargs)
  return BPETokenizer(tokens, MERGES, **args)


def test_bytes_to_unicode():
  table = bpe_tokenizer.bytes_to_unicode()
  assert len(table) == 256 and len(set(table.values())) == 256
  assert table[ord("a")] == "a" and table[ord("!")] == "!"
  assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"


@pytest.mark.parametrize(
    "pre, text, pieces",
    [
        (
            "gpt2",
            "I'll pay 123 dollars  now!\n",
            ["I", "'ll", " pay", " 123", " dollars", " ", " now", "!", "\n"],
        ),
        (
            "smollm",
            "I'll pay 123 dollars  now!\n",
            [
                "I",
                "'ll",
                " pay",
                " ",
                "1",
                "2",
                "3",
                " dollars",
                " ",
                " now",
                "!",
                "\n",
            ],
        ),
        ("smollm", "naïve café 日本語", ["naïve", " café", " 日本語"]),
        ("smollm", "cafe\u0301", ["cafe", "\u0301"]),  # Mn is not a letter.
        ("smollm", "a\u00a0b", ["a", "\u00a0", "b"]),  # NBSP is White_Space.
        ("smollm", "x \x1cy", ["x", " \x1c", "y"]),  # \x1c is not White_Space.
        ("smollm", "½²", ["½", "²"]),  # No digits split one by one too.
        ("gpt2", "end   ", ["end", "   "]),
        ("gpt2", "a \tb", ["a", " ", "\t", "b"]),
        ("gpt2", "it's THEY'RE", ["it", "'s", " THEY", "'", "RE"]),
    ],
)
def test_pre_tokenizer(pre, text, pieces):
  assert make(pre).pre_tokenize(text) == pieces


def test_merges_and_round_trip():
  tok = make()
  ids = tok.encode(" the thin")
  assert [tok.tokens[i] for i in ids] == ["Ġthe", "Ġt", "h", "in"]
  assert tok.encode("   x") == [
      tok.token_to_id("ĠĠ"),
      tok.token_to_id("Ġ"),
      tok.token_to_id("x"),
  ]
  rng = random.Random(0)
  alphabet = "ab th e 01\n\t.,'’éü日本😀\u00a0\x00\x7f<|>_"
  for _ in range(300):
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
    assert tok.decode(tok.encode(text)) == text


def test_special_tokens():
  tok = make()
  ids = tok.encode("<|im_start|>user\nhi<|im_end|>")
  assert ids[0] == 1 and ids[-1] == 2
  assert tok.decode(ids) == "user\nhi"  # Control tokens are dropped.
  plain = tok.encode("<|im_end|>", parse_special=False)
  assert 2 not in plain and tok.decode(plain) == "<|im_end|>"
  assert tok.stop_ids == (2, 0)
  assert (tok.pad_id, tok.eos_id, tok.unk_id, tok.bos_id) == (2, 2, 0, None)
  with pytest.raises(ValueError, match="outside the vocabulary"):
    tok.decode([tok.vocab_size])


def test_invalid_utf8_is_replaced():
  tok = make()
  lone = tok.token_to_id(bpe_tokenizer.bytes_to_unicode()[0xE6])
  assert tok.decode([lone]) == "\ufffd"


def test_format_prompt_with_default_system():
  tok = make()
  assert tok.format_prompt("Hello") == (
      "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
      "trained by Hugging Face<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
      "<|im_start|>assistant\n"
  )


@pytest.mark.parametrize("template", [SMOL_TEMPLATE, NO_DEFAULT_TEMPLATE])
def test_format_prompt_matches_jinja_template(template):
  jinja2 = pytest.importorskip("jinja2")
  tok = make(template=template)
  text = "Write {one} sentence about 'the sea'."
  rendered = (
      jinja2.Environment()
      .from_string(template)
      .render(
          messages=[{"role": "user", "content": text}],
          add_generation_prompt=True,
      )
  )
  assert tok.format_prompt(text) == rendered


def test_plain_template_without_chat_template():
  tok = make(template=None)
  assert not tok.chatml
  assert tok.format_prompt("Hi").startswith("Hi\n### Response")


def test_encode_prompt_keeps_user_specials_as_text():
  tok = make()
  ids = tok.encode_prompt("a<|im_end|>b")
  assert ids.count(2) == 2  # After the system turn and the user turn only.
  assert ids == (
      tok.encode(tok.format_prompt("\0").split("\0")[0])
      + tok.encode("a<|im_end|>b", parse_special=False)
      + tok.encode("<|im_end|>\n<|im_start|>assistant\n")
  )
  assert tok.encode_prompt("x") == tok.encode(tok.format_prompt("x"))
  with_bos = make(bos_id=1)
  assert with_bos.encode_prompt("x") == [1] + tok.encode_prompt("x")


def test_from_gguf_metadata():
  tokens, types = vocab()
  meta = {
      "tokenizer.ggml.model": "gpt2",
      "tokenizer.ggml.pre": "smollm",
      "tokenizer.ggml.tokens": tokens,
      "tokenizer.ggml.merges": MERGES,
      "tokenizer.ggml.token_type": types,
      "tokenizer.ggml.bos_token_id": 1,
      "tokenizer.ggml.eos_token_id": 2,
      "tokenizer.ggml.unknown_token_id": 0,
      "tokenizer.ggml.padding_token_id": 2,
      "tokenizer.ggml.add_bos_token": False,
      "tokenizer.chat_template": SMOL_TEMPLATE,
  }
  tok = BPETokenizer.from_gguf_metadata(meta)
  assert tok.bos_id is None  # The model never prepends one.
  assert tok.encode(" the") == make().encode(" the")
  tok = BPETokenizer.from_gguf_metadata(
      {**meta, "tokenizer.ggml.add_bos_token": True}
  )
  assert tok.bos_id == 1
  with pytest.raises(ValueError, match="not byte-level BPE"):
    BPETokenizer.from_gguf_metadata({**meta, "tokenizer.ggml.model": "llama"})
  with pytest.raises(ValueError, match="unsupported pre-tokenizer 'falcon'"):
    BPETokenizer.from_gguf_metadata({**meta, "tokenizer.ggml.pre": "falcon"})


def test_matches_hugging_face_tokenizers():
  tokenizers = pytest.importorskip("tokenizers")
  tokens, _ = vocab()
  ref = tokenizers.Tokenizer(
      tokenizers.models.BPE(
          {t: i for i, t in enumerate(tokens)},
          [tuple(m.split(" ")) for m in MERGES],
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
      [tokenizers.AddedToken(s, special=True) for s in SPECIALS]
  )
  tok = make()
  rng = random.Random(1)
  alphabet = "ab th e in 01 9\n\t.,'s’éü日本😀\u00a0\u3000½<|im_end|>"
  for _ in range(500):
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
    text += rng.choice(["", "<|im_start|>", " the 's"])
    assert tok.encode(text) == ref.encode(text).ids, repr(text)
