"""Byte-level BPE tokenizer (GPT-2 family) built from GGUF metadata.

Owns `BPETokenizer`, the `Tokenizer` for pretrained models whose vocabulary
ships inside a GGUF file (`tokenizer.ggml.model == "gpt2"`): the GPT-2
byte-to-unicode mapping, the model's pre-tokenizer (selected by
`tokenizer.ggml.pre` from `PRE_TOKENIZERS`), rank-ordered merges, control
tokens matched in text and dropped on decode, and the ChatML chat template.

The pre-tokenizer patterns use `\\p{L}` / `\\p{N}` / `\\s` semantics; the
standard `re` module has no Unicode property classes, so the classes are
generated once (lazily, on first use) from `unicodedata` and the Unicode
White_Space property.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from typing import Any, Iterable, Mapping, Sequence

from rlcs_jax.tokenizer import Tokenizer

# llama.cpp token types (tokenizer.ggml.token_type).
TOKEN_NORMAL = 1
TOKEN_UNKNOWN = 2
TOKEN_CONTROL = 3
TOKEN_USER_DEFINED = 4
TOKEN_UNUSED = 5
TOKEN_BYTE = 6

# Keys of a Hugging Face tokenizer_config.json that `from_hf_dir` reads, and
# their values when absent (every key is optional in that file).
_HF_TOKENIZER_CONFIG_DEFAULTS = {
    "eos_token": None,
    "pad_token": None,
    "bos_token": None,
    "add_bos_token": False,
    "chat_template": None,
}

_GPT2_PATTERN = (
    r"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+"
    r"|[{S}]+(?![^{S}])|[{S}]+"
)
# tokenizer.ggml.pre -> patterns applied in turn, each splitting every piece
# into its matches and the text between them (llama.cpp semantics; the same
# as Hugging Face's pre-tokenizer sequences for these models).
PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {
    "gpt2": (_GPT2_PATTERN,),
    # Digits are split off one by one first (HF: Digits(individual_digits)).
    "smollm": (r"[{N}]", _GPT2_PATTERN),
    "starcoder": (r"[{N}]", _GPT2_PATTERN),
    # Qwen2 / Qwen2.5 / Qwen3 (Hugging Face tokenizer.json Split regex).
    "qwen2": (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n{L}{N}]?[{L}]+|[{N}]"
        r"| ?[^{S}{L}{N}]+[\r\n]*|[{S}]*[\r\n]+|[{S}]+(?![^{S}])|[{S}]+",
    ),
}

# Unicode White_Space property (what \s means in Rust regex / Oniguruma).
_WHITE_SPACE = (
    (0x09, 0x0D),
    (0x20, 0x20),
    (0x85, 0x85),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
)

_IM_START, _IM_END, _END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
  """GPT-2's reversible map from bytes to printable unicode characters."""
  printable = (
      list(range(ord("!"), ord("~") + 1))
      + list(range(ord("¡"), ord("¬") + 1))
      + list(range(ord("®"), ord("ÿ") + 1))
  )
  chars = printable[:]
  extra = 0
  for b in range(256):
    if b not in printable:
      printable.append(b)
      chars.append(256 + extra)
      extra += 1
  return dict(zip(printable, map(chr, chars)))


def _class_body(ranges: Iterable[tuple[int, int]]) -> str:
  parts = []
  for lo, hi in ranges:
    parts.append(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}")
  return "".join(parts)


def _ranges(predicate) -> list[tuple[int, int]]:
  ranges, start = [], None
  for cp in range(sys.maxunicode + 2):
    inside = cp <= sys.maxunicode and predicate(chr(cp))
    if inside and start is None:
      start = cp
    elif not inside and start is not None:
      ranges.append((start, cp - 1))
      start = None
  return ranges


@functools.cache
def _unicode_classes() -> dict[str, str]:
  """Character-class bodies for \\p{L}, \\p{N} and \\s (built once)."""
  return {
      "L": _class_body(_ranges(str.isalpha)),  # Lu Ll Lt Lm Lo.
      "N": _class_body(_ranges(lambda c: unicodedata.category(c)[0] == "N")),
      "S": _class_body(_WHITE_SPACE),
  }


@functools.cache
def _compiled_pre_tokenizer(pre: str) -> tuple[re.Pattern[str], ...]:
  classes = _unicode_classes()
  return tuple(re.compile(p.format(**classes)) for p in PRE_TOKENIZERS[pre])


def _split(pieces: list[str], pattern: re.Pattern[str]) -> list[str]:
  out = []
  for piece in pieces:
    pos = 0
    for match in pattern.finditer(piece):
      if match.start() > pos:
        out.append(piece[pos : match.start()])
      out.append(match.group())
      pos = match.end()
    if pos < len(piece):
      out.append(piece[pos:])
  return out


def _default_system_prompt(chat_template: str) -> str | None:
  """The literal system message a ChatML template adds when none is given."""
  match = re.search(
      r"<\|im_start\|>system(?:\n|\\n)([^'\"{}]*?)<\|im_end\|>", chat_template
  )
  return match.group(1) if match else None


class BPETokenizer(Tokenizer):
  """Byte-level BPE with explicit special ids and a ChatML template."""

  def __init__(
      self,
      tokens: Sequence[str],
      merges: Sequence[str],
      *,
      eos_id: int,
      token_types: Sequence[int] | None = None,
      pad_id: int | None = None,
      bos_id: int | None = None,
      unk_id: int | None = None,
      pre: str = "gpt2",
      chat_template: str | None = None,
  ):
    """Builds the tokenizer.

    Args:
      tokens: the vocabulary, byte-level encoded (id = index).
      merges: "left right" pairs, highest priority first.
      eos_id: end-of-sequence id.
      token_types: llama.cpp token types; CONTROL tokens are matched in text
        by `encode` and dropped by `decode`. Default: all NORMAL.
      pad_id: padding id (default: eos_id).
      bos_id: id `encode_prompt` prepends; None if the model uses none.
      unk_id: the model's unknown-token id (informational: byte-level BPE
        never needs it; bytes without a token are dropped).
      pre: pre-tokenizer name, a key of `PRE_TOKENIZERS`.
      chat_template: the model's Jinja chat template; a ChatML template makes
        `format_prompt` use ChatML (with the template's default system
        message, if it has one).
    """
    if pre not in PRE_TOKENIZERS:
      raise ValueError(
          f"unsupported pre-tokenizer {pre!r}; supported: "
          f"{sorted(PRE_TOKENIZERS)}"
      )
    self.tokens = list(tokens)
    self.vocab_size = len(self.tokens)
    self.token_types = (
        list(token_types)
        if token_types is not None
        else [TOKEN_NORMAL] * self.vocab_size
    )
    if len(self.token_types) != self.vocab_size:
      raise ValueError(
          f"{len(self.token_types)} token types for "
          f"{self.vocab_size} tokens"
      )
    for name, value in (
        ("eos_id", eos_id),
        ("pad_id", pad_id),
        ("bos_id", bos_id),
        ("unk_id", unk_id),
    ):
      if value is not None and not 0 <= value < self.vocab_size:
        raise ValueError(f"{name}={value} outside the vocabulary")
    self.eos_id = eos_id
    self.pad_id = eos_id if pad_id is None else pad_id
    self.bos_id = bos_id
    self.unk_id = unk_id
    self.pre = pre
    self.chat_template = chat_template
    self._vocab = {token: i for i, token in enumerate(self.tokens)}
    self._ranks = {}
    for rank, merge in enumerate(merges):
      left, right = merge.split(" ")
      self._ranks.setdefault((left, right), rank)
    self._byte_encoder = bytes_to_unicode()
    byte_decoder = {c: b for b, c in self._byte_encoder.items()}
    self._control = frozenset(
        i for i, t in enumerate(self.token_types) if t == TOKEN_CONTROL
    )
    # Raw bytes of every token (control tokens decode to nothing).
    self._token_bytes = []
    for token, kind in zip(self.tokens, self.token_types):
      if kind == TOKEN_CONTROL:
        self._token_bytes.append(b"")
      elif kind == TOKEN_USER_DEFINED:
        self._token_bytes.append(token.encode("utf-8"))
      else:
        self._token_bytes.append(
            b"".join(
                bytes([byte_decoder[c]])
                if c in byte_decoder
                else c.encode("utf-8")
                for c in token
            )
        )
    specials = sorted(
        (
            self.tokens[i]
            for i, t in enumerate(self.token_types)
            if t in (TOKEN_CONTROL, TOKEN_USER_DEFINED)
        ),
        key=len,
        reverse=True,
    )
    self._special_re = (
        re.compile("|".join(map(re.escape, specials))) if specials else None
    )
    self._cache: dict[str, tuple[int, ...]] = {}
    system = (
        _default_system_prompt(chat_template)
        if chat_template and _IM_START in chat_template
        else None
    )
    self.chatml = bool(
        chat_template
        and _IM_START in chat_template
        and _IM_START in self._vocab
        and _IM_END in self._vocab
    )
    self.default_system_prompt = system if self.chatml else None

  @classmethod
  def from_gguf_metadata(cls, meta: Mapping[str, Any]) -> BPETokenizer:
    """Builds from GGUF key/values (`gguf_import.read_metadata`)."""
    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
      raise ValueError(
          f"tokenizer.ggml.model={model!r} is not byte-level " "BPE ('gpt2')"
      )
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False))
    bos = meta.get("tokenizer.ggml.bos_token_id")
    return cls(
        meta["tokenizer.ggml.tokens"],
        meta["tokenizer.ggml.merges"],
        token_types=meta.get("tokenizer.ggml.token_type"),
        eos_id=int(meta["tokenizer.ggml.eos_token_id"]),
        pad_id=meta.get("tokenizer.ggml.padding_token_id"),
        bos_id=int(bos) if add_bos and bos is not None else None,
        unk_id=meta.get("tokenizer.ggml.unknown_token_id"),
        pre=meta.get("tokenizer.ggml.pre", "gpt2"),
        chat_template=meta.get("tokenizer.chat_template"),
    )

  @classmethod
  def from_hf_dir(cls, path: str, *, pre: str = "qwen2") -> BPETokenizer:
    """Reads a Hugging Face byte-level BPE `tokenizer.json` (+ config).

    Added tokens marked `special` become control tokens; the chat template
    and eos/pad come from `tokenizer_config.json`. `pre` names the
    pre-tokenizer (Qwen2-family default).
    """
    import json  # pylint: disable=g-import-not-at-top
    import os  # pylint: disable=g-import-not-at-top

    tok_path = os.path.join(path, "tokenizer.json")
    if not os.path.exists(tok_path):
      raise FileNotFoundError(f"no tokenizer.json in {path}")
    with open(tok_path, encoding="utf-8") as f:
      spec = json.load(f)
    model = spec.get("model", {})
    if model.get("type") != "BPE":
      raise ValueError(
          f"{tok_path}: model.type={model.get('type')!r}, "
          "expected byte-level 'BPE'"
      )
    vocab = dict(model["vocab"])
    types = {}
    for added in spec.get("added_tokens", []):
      vocab[added["content"]] = added["id"]
      types[added["id"]] = (
          TOKEN_CONTROL if added.get("special") else TOKEN_USER_DEFINED
      )
    size = max(vocab.values()) + 1
    tokens = [f"<unused_{i}>" for i in range(size)]
    for token, i in vocab.items():
      tokens[i] = token
    token_types = [types.get(i, TOKEN_NORMAL) for i in range(size)]
    merges = [
        m if isinstance(m, str) else " ".join(m)
        for m in model.get("merges", [])
    ]
    # The keys of Hugging Face's tokenizer_config.json read here (all
    # optional there), with their values when the file or a key is absent.
    hf_tok_config = dict(_HF_TOKENIZER_CONFIG_DEFAULTS)
    cfg_path = os.path.join(path, "tokenizer_config.json")
    if os.path.exists(cfg_path):
      with open(cfg_path, encoding="utf-8") as f:
        hf_tok_config.update(json.load(f))

    def token_id(key):
      value = hf_tok_config[key]
      if isinstance(value, dict):
        value = value.get("content")
      return vocab.get(value) if value else None

    eos = token_id("eos_token")
    if eos is None:
      raise ValueError(f"{cfg_path}: no eos_token found")
    return cls(
        tokens,
        merges,
        eos_id=eos,
        token_types=token_types,
        pad_id=token_id("pad_token"),
        bos_id=(
            token_id("bos_token") if hf_tok_config["add_bos_token"] else None
        ),
        pre=pre,
        chat_template=hf_tok_config["chat_template"],
    )

  @classmethod
  def from_gguf(cls, path: str) -> BPETokenizer:
    """Reads the tokenizer embedded in a GGUF file."""
    import gguf  # pylint: disable=g-import-not-at-top

    reader = gguf.GGUFReader(path)
    return cls.from_gguf_metadata(
        {
            name: field.contents()
            for name, field in reader.fields.items()
            if name.startswith("tokenizer.")
        }
    )

  # --------------------------------------------------------------------------
  # Encoding.

  def token_to_id(self, token: str) -> int:
    """Id of a vocabulary entry (e.g. "<|im_end|>"); KeyError if absent."""
    return self._vocab[token]

  def pre_tokenize(self, text: str) -> list[str]:
    """Splits text into the pieces BPE runs on (before byte encoding)."""
    pieces = [text] if text else []
    for pattern in _compiled_pre_tokenizer(self.pre):
      pieces = _split(pieces, pattern)
    return pieces

  def _bpe(self, piece: str) -> tuple[int, ...]:
    cached = self._cache.get(piece)
    if cached is not None:
      return cached
    parts = [self._byte_encoder[b] for b in piece.encode("utf-8")]
    ranks = self._ranks
    while len(parts) > 1:
      best, best_rank = None, None
      for pair in zip(parts, parts[1:]):
        rank = ranks.get(pair)
        if rank is not None and (best_rank is None or rank < best_rank):
          best, best_rank = pair, rank
      if best is None:
        break
      merged, i = [], 0
      while i < len(parts):
        if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
          merged.append(parts[i] + parts[i + 1])
          i += 2
        else:
          merged.append(parts[i])
          i += 1
      parts = merged
    # A byte with no token of its own is dropped, as llama.cpp and Hugging
    # Face do (SmolLM2's vocabulary lacks a few control bytes).
    ids = [self._vocab[part] for part in parts if part in self._vocab]
    if len(self._cache) > 200_000:
      self._cache.clear()
    self._cache[piece] = result = tuple(ids)
    return result

  def encode(self, text: str, *, parse_special: bool = True) -> list[int]:
    """Encodes text without adding bos/eos.

    Args:
      text: the text.
      parse_special: match control/user-defined token strings such as
        "<|im_end|>" in the text as their ids (Hugging Face's default).
        Pass False for untrusted text, which is then encoded as plain bytes.
    """
    if parse_special and self._special_re is not None:
      chunks, pos = [], 0
      for match in self._special_re.finditer(text):
        chunks.append((text[pos : match.start()], None))
        chunks.append(("", self._vocab[match.group()]))
        pos = match.end()
      chunks.append((text[pos:], None))
    else:
      chunks = [(text, None)]
    ids = []
    for chunk, special in chunks:
      if special is not None:
        ids.append(special)
        continue
      for piece in self.pre_tokenize(chunk):
        ids.extend(self._bpe(piece))
    return ids

  def decode(self, ids: Iterable[int]) -> str:
    """Decodes ids, dropping control tokens; bad UTF-8 becomes U+FFFD."""
    out = []
    for token_id in ids:
      token_id = int(token_id)
      if not 0 <= token_id < self.vocab_size:
        raise ValueError(
            f"token id {token_id} outside the vocabulary "
            f"[0, {self.vocab_size})"
        )
      out.append(self._token_bytes[token_id])
    return b"".join(out).decode("utf-8", errors="replace")

  # --------------------------------------------------------------------------
  # Chat template.

  def format_prompt(self, user_text: str) -> str:
    """ChatML turn for `user_text` ending where the assistant's reply starts.

    Matches the model's chat template with one user message and
    add_generation_prompt=True (SmolLM2's adds a default system message).
    Without a ChatML template, falls back to the plain template.
    """
    if not self.chatml:
      return super().format_prompt(user_text)
    system = (
        ""
        if self.default_system_prompt is None
        else f"{_IM_START}system\n{self.default_system_prompt}{_IM_END}\n"
    )
    return (
        f"{system}{_IM_START}user\n{user_text}{_IM_END}\n"
        f"{_IM_START}assistant\n"
    )

  def encode_prompt(self, user_text: str) -> list[int]:
    """bos (if any) + the formatted prompt, with specials only from the
    template: control strings inside `user_text` stay plain text."""
    if not self.chatml:
      prefix = [] if self.bos_id is None else [self.bos_id]
      return prefix + self.encode(
          self.format_prompt(user_text), parse_special=False
      )
    before, after = self.format_prompt("\0").split("\0")
    ids = [] if self.bos_id is None else [self.bos_id]
    return (
        ids
        + self.encode(before)
        + self.encode(user_text, parse_special=False)
        + self.encode(after)
    )

  @property
  def stop_ids(self) -> tuple[int, ...]:
    """eos, plus <|im_end|> and <|endoftext|> when they are control tokens."""
    ids = [self.eos_id]
    for token in (_IM_END, _END_OF_TEXT):
      token_id = self._vocab.get(token)
      if token_id is not None and token_id in self._control:
        ids.append(token_id)
    return tuple(dict.fromkeys(ids))
