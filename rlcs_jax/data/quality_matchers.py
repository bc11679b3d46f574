"""Compiled matchers over the StoryWorld lexicon, for quality analysis.

Owns the text normalisation used for matching (`norm`: lowercase, straight
quotes, commas dropped, single spaces) and the regular expressions built
from the lexicon and phrase tables: names, places, objects, time words,
emotion words, trait phrases, phrasing markers, action verb forms, and the
world vocabulary used to tell well-formed sentences from garbage. Built
once, on first use (`tables()`), not at import.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Mapping

from rlcs_jax.data import storyworld_lexicon as lex
from rlcs_jax.data import storyworld_phrases as phr


def norm(text: str) -> str:
  """Lowercase, straight quotes, no commas, single spaces."""
  text = text.lower().replace("\u2019", "'").replace("\u201c", '"')
  text = text.replace("\u201d", '"').replace(",", " ")
  return " ".join(text.split())


def alternation(phrases) -> re.Pattern[str]:
  """One word-bounded regex matching any phrase (longest first)."""
  ordered = sorted({norm(p) for p in phrases}, key=len, reverse=True)
  body = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in ordered)
  return re.compile(r"\b(" + body + r")\b")


def _walk_strings(obj):
  if isinstance(obj, str):
    yield obj
  elif isinstance(obj, Mapping):
    for k, v in obj.items():
      yield from _walk_strings(k)
      yield from _walk_strings(v)
  elif isinstance(obj, (tuple, list)):
    for v in obj:
      yield from _walk_strings(v)


@dataclasses.dataclass(frozen=True)
class Tables:
  """Compiled matchers over the lexicon (built once, on first use)."""

  vocab: frozenset[str]
  names: re.Pattern[str]
  places: re.Pattern[str]
  objects: re.Pattern[str]
  times: re.Pattern[str]
  time_of: dict[str, str]
  emotions: re.Pattern[str]
  emotion_of: dict[str, tuple[str, str]]
  traits: re.Pattern[str]
  trait_of: dict[str, tuple[str, ...]]
  dialogue: frozenset[str]
  vivid: re.Pattern[str]
  bland: re.Pattern[str]
  actions: dict[str, re.Pattern[str]]
  present: re.Pattern[str]


@functools.cache
def tables() -> Tables:
  """The matchers (cached after the first call)."""
  vocab = set()
  tables = {**vars(lex), **vars(phr)}
  for name, value in tables.items():
    if name.isupper():
      for s in _walk_strings(value):
        s = re.sub(r"\{[^}]*\}", " ", s)  # Template slots are not words.
        vocab.update(re.findall(r"[a-z]+", s.lower()))
  time_of = {norm(w): t for t, ws in lex.TIME_WORDS.items() for w in ws}
  emotion_of = {}
  for cat, levels in lex.EMOTION_WORDS.items():
    for intensity, words in levels.items():
      for w in words:
        emotion_of[norm(w)] = (cat, intensity)
  for w in lex.FLAT_WORDS:
    emotion_of[norm(w)] = ("flat", "flat")
  trait_of: dict[str, list[str]] = {}
  dialogue = set()
  for trait, phrases in lex.TRAIT_ACTIONS.items():
    for p in phrases:
      trait_of.setdefault(norm(p), []).append(trait)
  for trait, lines in lex.TRAIT_LINES.items():
    for p in lines:
      trait_of.setdefault(norm(p), []).append(trait)
      dialogue.add(norm(p))
  return Tables(
      vocab=frozenset(vocab),
      names=alternation(lex.NAMES),
      places=alternation(lex.PLACES),
      objects=alternation(lex.OBJECTS),
      times=alternation(time_of),
      time_of=time_of,
      emotions=alternation(emotion_of),
      emotion_of=emotion_of,
      traits=alternation(trait_of),
      trait_of={k: tuple(v) for k, v in trait_of.items()},
      dialogue=frozenset(dialogue),
      vivid=alternation(phr.VIVID_MARKERS),
      bland=alternation(phr.BLAND_MARKERS),
      actions={
          a: alternation(spec["forms"]) for a, spec in lex.ACTIONS.items()
      },
      present=alternation(
          spec["present"].split()[0] for spec in lex.ACTIONS.values()
      ),
  )


@functools.lru_cache(maxsize=256)
def extra_names(names: tuple[str, ...]) -> re.Pattern[str] | None:
  """A matcher for context names that are not in the lexicon."""
  return alternation(names) if names else None
