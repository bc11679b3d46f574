"""Offline text analysis for the constraint rules: words, sentences, lines.

Owns the tokenizers and scanners that `rules.py` counts with. Nothing here
needs NLTK data or the network.

Where IFEval (google-research/instruction_following_eval) defines a count,
the function here reproduces it:

* `count_words`: IFEval's `nltk.RegexpTokenizer(r"\\w+")`, i.e. the number of
  `\\w+` runs. Combining marks are not `\\w`, so they split words, as in
  IFEval.
* `split_markdown_paragraphs`: `re.split(r"\\s?\\*\\*\\*\\s?", text)`.
* `count_bullet_lines`, `count_placeholders`, `has_title`: the same results
  as IFEval's regular expressions (`^\\s*\\*[^\\*].*$` plus `^\\s*-.*$`,
  `\\[.*?\\]`, `<<[^\\n]+>>`), computed in linear time where those take
  quadratic time (10k newlines, 10k `[`). Tests check them against the
  original expressions.

Deviations, by necessity:

* `split_sentences` replaces NLTK's pretrained Punkt model with rules:
  a sentence ends at `.`, `!`, `?`, `…` (or CJK `。！？`) followed by
  optional closing quotes/brackets and whitespace or the end of the text.
  A period does not end a sentence after a title or Latin abbreviation
  (`Mr.`, `Dr.`, `e.g.`, `i.e.`, `vs.`), after a single-letter initial, or
  inside a number (`3.14`); after `etc.`, `a.m.`, acronyms like `U.S.` and
  ellipses it ends one only when the next word is capitalised. Dialogue
  punctuation followed by a closing quote and a lowercase word
  (`"Run!" she said.`) does not end a sentence, where Punkt would split.
  Like Punkt, line breaks alone never end a sentence. Counts agree with
  Punkt on ordinary prose; they can differ on rare abbreviations.
* `capital_word_tokens` replaces `nltk.word_tokenize` with a regex that
  keeps hyphenated words whole and splits clitics (`DON'T` gives `DON` and
  `'T`, two tokens as in NLTK's `DO`, `N'T`).
"""

import re

_WORD = re.compile(r"\w+")
_MARKDOWN_DIVIDER = re.compile(r"\s?\*\*\*\s?")
_WHITESPACE_RUN = re.compile(r"\s*")
# IFEval counts `^\s*\*[^\*].*$` and `^\s*-.*$` (MULTILINE) and `\[.*?\]`
# matches. Those take quadratic time on inputs like 10k newlines or 10k "[",
# because every failed attempt rescans. These variants always match where
# IFEval's attempt starts, consume what its match (or the attempts that fail
# with it) would, and record success in the group, so `findall` yields one
# non-empty group per IFEval match, in linear time.
_STAR_LINE = re.compile(r"^\s*(\*[^*])?.*", flags=re.MULTILINE)
_DASH_LINE = re.compile(r"^\s*(-)?.*", flags=re.MULTILINE)
_PLACEHOLDER = re.compile(r"\[[^\]\n]*(\])?")
_CAPITAL_TOKEN = re.compile(r"\w+(?:-\w+)*|'\w+")

# A run of terminal punctuation, only at the start of the run (the
# lookbehind keeps scanning linear on long runs like "!!!!...x"), then
# closing quotes or brackets. Western marks need whitespace or the end after
# them; CJK full stops do not.
_CLOSERS = "\"'”’»)]）」』"
_BOUNDARY = re.compile(
    r"(?<![.!?…])([.!?…]+)([" + re.escape(_CLOSERS) + r"]*)(?=\s|\Z)"
    r"|(?<![。！？])([。！？]+)([" + re.escape(_CLOSERS) + r"]*)"
)
_OPENERS = "\"'“‘«([（「『"
_QUOTES = "\"'”’»」』"

# Words after which a period never ends a sentence.
_TITLE_ABBREVIATIONS = frozenset(
    (
        "mr mrs ms mx messrs dr prof st sgt capt cpt lt col gen gov sen rev"
        " hon mt mme mlle e.g i.e vs cf viz approx"
    ).split()
)
# Words after which a period ends a sentence unless a number follows.
_NUMBER_ABBREVIATIONS = frozenset(
    "no nos vol vols pp fig figs ch sec art".split()
)
# Words after which a period ends a sentence only before a capital.
_MAYBE_ABBREVIATIONS = frozenset(
    "etc inc ltd co corp jr sr a.m p.m al ph.d b.c a.d u.s u.k u.n e.u".split()
)
_ACRONYM = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")


def count_words(text: str) -> int:
  """Counts `\\w+` runs, as IFEval's `count_words`."""
  return sum(1 for _ in _WORD.finditer(text))


def count_letter(text: str, letter: str) -> int:
  """Counts case-insensitive occurrences of one character."""
  return text.lower().count(letter.lower())


def split_markdown_paragraphs(text: str) -> list[str]:
  """Splits on the `***` markdown divider exactly as IFEval does."""
  return _MARKDOWN_DIVIDER.split(text)


def split_blank_line_paragraphs(text: str) -> list[str]:
  """Splits on `\\n\\n` exactly as IFEval's nth-paragraph check does."""
  return text.split("\n\n")


def capital_word_tokens(text: str) -> list[str]:
  """Tokenizes words like `nltk.word_tokenize`, without punctuation tokens."""
  return _CAPITAL_TOKEN.findall(text)


def _next_word_start(text: str, pos: int) -> str | None:
  """Returns the first character of the next word after `pos`, or None."""
  n = len(text)
  pos = _WHITESPACE_RUN.match(text, pos).end()
  while pos < n and text[pos] in _OPENERS:
    pos += 1
  return text[pos] if pos < n else None


def _starts_sentence(char: str | None) -> bool:
  """True if a word starting with `char` can open a new sentence."""
  return (
      char is None
      or (char.isalpha() and not char.islower())
      or (not char.isalnum() and char not in ",;:")
  )


def _previous_token(text: str, end: int) -> str:
  """Returns the whitespace-delimited token ending at `end`, lowercased."""
  start = end
  # Tokens longer than 40 characters are never abbreviations.
  limit = max(0, end - 40)
  while start > limit and not text[start - 1].isspace():
    start -= 1
  return text[start:end].lstrip(_OPENERS).lower()


def _is_boundary(text: str, match: re.Match[str]) -> bool:
  """Decides whether a run of terminal punctuation ends a sentence."""
  if match.group(3):  # CJK full stop.
    return True
  marks, closers = match.group(1), match.group(2)
  next_char = _next_word_start(text, match.end())
  quoted = any(quote in closers for quote in _QUOTES)
  if quoted and next_char is not None and next_char.islower():
    return False  # Dialogue: "Run!" she said.
  if "!" in marks or "?" in marks:
    return True
  if len(marks) > 1 or "…" in marks:  # Ellipsis.
    return _starts_sentence(next_char)
  token = _previous_token(text, match.start())
  if not token:
    return True
  if token in _TITLE_ABBREVIATIONS:
    return False
  if token in _NUMBER_ABBREVIATIONS:
    return next_char is None or not next_char.isdigit()
  if len(token) == 1 and token.isalpha():  # An initial, as in "J. Smith".
    return False
  if token in _MAYBE_ABBREVIATIONS or _ACRONYM.fullmatch(token):
    return _starts_sentence(next_char)
  return True


def split_sentences(text: str) -> list[str]:
  """Splits text into sentences with rules (no NLTK data); see module doc."""
  sentences = []
  start = 0
  for match in _BOUNDARY.finditer(text):
    if _is_boundary(text, match):
      sentence = text[start : match.end()].strip()
      if sentence:
        sentences.append(sentence)
      start = match.end()
  tail = text[start:].strip()
  if tail:
    sentences.append(tail)
  return sentences


def count_sentences(text: str) -> int:
  """Counts sentences as split by `split_sentences`."""
  return len(split_sentences(text))


def count_bullet_lines(text: str) -> int:
  """Counts markdown bullet lines (`* ...` or `- ...`) as IFEval does."""
  return sum(map(bool, _STAR_LINE.findall(text))) + sum(
      map(bool, _DASH_LINE.findall(text))
  )


def count_placeholders(text: str) -> int:
  """Counts `[...]` placeholders on one line, as IFEval's `\\[.*?\\]`."""
  return sum(map(bool, _PLACEHOLDER.findall(text)))


def has_title(text: str) -> bool:
  """True if some `<<...>>` on one line has non-blank content, as IFEval."""
  for line in text.split("\n"):
    start = line.find("<<")
    if start < 0:
      continue
    # The greedy `<<[^\n]+>>` ends at the line's last ">>".
    stop = line.rfind(">>")
    if (
        stop >= start + 3
        and line[start : stop + 2].lstrip("<").rstrip(">").strip()
    ):
      return True
  return False
