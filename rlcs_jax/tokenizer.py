"""Tokenizers behind one interface: SentencePiece (trained here) and BPE.

`Tokenizer` is what the data pipeline, sampler wrappers and trainers use:
explicit special ids, `encode`/`decode`, and `format_prompt`, which wraps a
user prompt in the model's chat template (ChatML for instruction models) or
in the plain template used by models trained from scratch.
"""

from __future__ import annotations

import abc
import os
import tempfile
from typing import Iterable, Sequence

import sentencepiece as spm

# Plain template for models we train ourselves: the response follows this.
PLAIN_RESPONSE_MARKER = "\n### Response:\n"


class Tokenizer(abc.ABC):
  """Text <-> ids with explicit special ids."""

  vocab_size: int
  pad_id: int
  eos_id: int
  bos_id: int | None
  unk_id: int | None

  @abc.abstractmethod
  def encode(self, text: str) -> list[int]:
    """Encodes text without adding special tokens."""

  @abc.abstractmethod
  def decode(self, ids: Iterable[int]) -> str:
    """Decodes ids, dropping special tokens."""

  def format_prompt(self, user_text: str) -> str:
    """Wraps a user prompt so the model's response follows it."""
    return user_text + PLAIN_RESPONSE_MARKER

  @property
  def stop_ids(self) -> tuple[int, ...]:
    """Token ids that end a generation."""
    return (self.eos_id,)

  def encode_prompt(self, user_text: str) -> list[int]:
    """bos (if any) + the formatted prompt."""
    prefix = [] if self.bos_id is None else [self.bos_id]
    return prefix + self.encode(self.format_prompt(user_text))


class SentencePieceTokenizer(Tokenizer):
  """SentencePiece model with pad=0, unk=1, bos=2, eos=3."""

  def __init__(self, model_path: str):
    if not os.path.exists(model_path):
      raise FileNotFoundError(f"tokenizer model not found: {model_path}")
    self.model_path = model_path
    self._sp = spm.SentencePieceProcessor(model_file=model_path)
    self.vocab_size = self._sp.get_piece_size()
    self.pad_id = self._sp.pad_id()
    self.unk_id = self._sp.unk_id()
    self.bos_id = self._sp.bos_id()
    self.eos_id = self._sp.eos_id()
    self._special = {self.pad_id, self.bos_id, self.eos_id}

  def encode(self, text: str) -> list[int]:
    return self._sp.encode(text)

  def decode(self, ids: Iterable[int]) -> str:
    return self._sp.decode([int(i) for i in ids if int(i) not in self._special])


def train_sentencepiece(
    texts: Iterable[str],
    model_prefix: str,
    *,
    vocab_size: int,
    model_type: str = "bpe",
    seed_sentencepiece_size: int = 200_000,
    user_symbols: Sequence[str] = (),
) -> str:
  """Trains a SentencePiece model on texts; returns the `.model` path.

  Newlines are kept as a piece (byte fallback covers anything unseen), so
  round trips are exact for any UTF-8 text.
  """
  os.makedirs(os.path.dirname(os.path.abspath(model_prefix)), exist_ok=True)
  with tempfile.NamedTemporaryFile(
      "w", suffix=".txt", delete=False, encoding="utf-8"
  ) as f:
    for text in texts:
      for line in text.split("\n"):
        if line.strip():
          f.write(line + "\n")
    corpus = f.name
  try:
    spm.SentencePieceTrainer.train(
        input=corpus,
        model_prefix=model_prefix,
        vocab_size=vocab_size,
        model_type=model_type,
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        user_defined_symbols=["\n", *user_symbols],
        seed_sentencepiece_size=seed_sentencepiece_size,
        hard_vocab_limit=False,
        num_threads=os.cpu_count() or 1,
        minloglevel=2,
    )
  finally:
    os.remove(corpus)
  return model_prefix + ".model"
