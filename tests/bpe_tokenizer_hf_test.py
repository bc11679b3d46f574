"""BPETokenizer.from_hf_dir matches Hugging Face `tokenizers` (Qwen2 regex)."""

import json
import os

import pytest

from rlcs_jax.bpe_tokenizer import BPETokenizer

tokenizers = pytest.importorskip("tokenizers")

QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
TEXTS = [
    "Hello world! It's 2026, and we're writing stories.\n\nNew\tlines.",
    "Ünïcödé 漢字 ok? 🙂",
    "Mara's key: 12345 items",
    "  spaces   here\n\n\nx",
    "I'LL go",
    "a1b22c",
    "<|im_end|> inside text",
]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
  from tokenizers import Regex, decoders, models, pre_tokenizers, trainers

  d = str(tmp_path_factory.mktemp("qwen_tok"))
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.Sequence(
      [
          pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
          pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
      ]
  )
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=600,
      special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
  )
  tok.train_from_iterator(TEXTS * 40, trainer)
  tok.save(os.path.join(d, "tokenizer.json"))
  with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
    json.dump(
        {
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "chat_template": "{% for m in messages %}<|im_start|>"
            "{{m.role}}\n{{m.content}}<|im_end|>\n"
            "{% endfor %}",
        },
        f,
    )
  return d, tok


def test_ids_match_hf_tokenizers(hf_dir):
  d, ref = hf_dir
  ours = BPETokenizer.from_hf_dir(d)
  for text in TEXTS:
    assert ours.encode(text) == ref.encode(text).ids, text
    assert ours.decode(ours.encode(text, parse_special=False)) == text


def test_specials_and_chat_template(hf_dir):
  d, _ = hf_dir
  ours = BPETokenizer.from_hf_dir(d)
  assert ours.eos_id == ours.token_to_id("<|im_end|>")
  assert ours.pad_id == ours.token_to_id("<|endoftext|>")
  assert ours.format_prompt("hi") == (
      "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
  )


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="tokenizer.json"):
    BPETokenizer.from_hf_dir(str(tmp_path))
