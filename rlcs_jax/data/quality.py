"""Quality analysis of any story text against a StoryWorld context.

Owns the mapping text -> five quality scores in [0, 1] (`DIMENSIONS`), with
the evidence behind them (for the teacher's reasoning). It scores arbitrary
text, not only generator output, and never raises: malformed contexts or
texts give low scores. Matching is case-insensitive and ignores commas, so
lowercased or comma-free constraint answers are scored like the originals.

How each dimension is read from the text:

* coherence: the fraction of well-formed sentences (mostly world
  vocabulary, no stuttering) times a penalty per fault: names of people
  outside the story, places outside the story, unanchored non-sequiturs
  (entities from elsewhere and no character of this story), time-of-day
  words that contradict the setting, a cut-off last sentence, missing
  sentence ends, present-tense retelling of the outline, rambling past
  `RAMBLE_SENTENCES` sentences or looping (more than two repeats).
* originality: share of vivid versus bland phrasings (lexicon markers),
  penalised by duplicated sentences (also ones copied from the prompt's
  story so far or outline) and repeated word trigrams.
* emotional_engagement: emotion beats (emotion or flat-affect words per
  sentence), each scored by intensity and fit with the mood of the outline
  event it follows; scaled down below two beats.
* outline_adherence: each outline event is found (actor, verb form, target
  in one sentence: full credit) or half-found (wrong actor or target); the
  largest in-order subset gets full weight, the rest half.
* character_consistency: trait phrases attributed to a character (nearest
  name, or pronoun) agree or clash with that character's traits; a smoothed
  agreement ratio, with a low prior when no trait is shown.

Short texts (under `MIN_SENTENCES` well-formed sentences) are scaled down on
every dimension; empty or garbage text scores near zero.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from typing import Any, Mapping

from rlcs_jax.data import quality_matchers as matchers
from rlcs_jax.data import storyworld_lexicon as lex

DIMENSIONS = lex.DIMENSIONS
MIN_SENTENCES = 3
RAMBLE_SENTENCES = 10
MAX_CHARS = 2400  # Longer inputs are analysed on a prefix, as cut off.

_FAULT_PENALTY = 0.22
_FREE_DUPLICATES = 2  # Repeats past this many also break coherence.
_MAX_VIVID_PER_SENTENCE = 2
_BEAT_SCORES = {
    ("strong", True): 1.0,
    ("mild", True): 0.6,
    ("strong", False): 0.15,
    ("mild", False): 0.1,
    ("flat", False): 0.0,
}


@dataclasses.dataclass(frozen=True)
class TraitHit:
  """A trait phrase attributed to a character."""

  name: str
  trait: str  # The character's trait that the phrase bears on.
  consistent: bool
  phrase: str


@dataclasses.dataclass(frozen=True)
class Beat:
  """One emotional beat: a sentence's emotion (or flat affect)."""

  category: str  # An emotion, or "flat".
  intensity: str  # "strong" | "mild" | "flat".
  fits: bool
  mood: str  # The mood the beat should have had ("" if unknown).
  word: str


@dataclasses.dataclass(frozen=True)
class Analysis:
  """Scores plus the evidence behind them."""

  scores: dict[str, float]
  num_sentences: int = 0
  num_words: int = 0
  # Coherence.
  malformed: int = 0
  wrong_names: tuple[str, ...] = ()
  place_jumps: tuple[str, ...] = ()
  non_sequiturs: tuple[str, ...] = ()
  contradictions: tuple[str, ...] = ()
  cut_off: bool = False
  tense_shifts: int = 0  # Sentences in the outline's present tense.
  # Originality.
  vivid: tuple[str, ...] = ()
  bland: tuple[str, ...] = ()
  duplicates: int = 0
  # Emotional engagement.
  beats: tuple[Beat, ...] = ()
  # Outline adherence: per outline event, credit in {0, 0.5, 1} and
  # whether it is in the in-order subset.
  event_credit: tuple[float, ...] = ()
  event_in_order: tuple[bool, ...] = ()
  # Character consistency.
  trait_hits: tuple[TraitHit, ...] = ()


def _zero_analysis() -> Analysis:
  return Analysis(scores={d: 0.0 for d in DIMENSIONS})


_PRONOUN_RE = re.compile(r"\b(she|her|he|him|his)\b")
_PRONOUN_GENDER = {
    "she": "she",
    "her": "she",
    "he": "he",
    "him": "he",
    "his": "he",
}
_TITLE_LINE_RE = re.compile(r"^[ \t]*<<[^\n]*>>[ \t]*$", re.MULTILINE)
_PS_RE = re.compile(r"\bp\.\s?s\.", re.IGNORECASE)
_SPLIT_RE = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"'\u201d])\s+|\n+")
_END_RE = re.compile(r"[.!?][\"'\u201d]?$")
_TOKEN_RE = re.compile(r"[a-z]+")


@dataclasses.dataclass
class _Context:
  """The parts of a context dict that analysis needs, validated."""

  traits: dict[str, tuple[str, ...]]
  gender: dict[str, str]
  places: frozenset[str]
  objects: frozenset[str]
  time: str
  outline: list[dict[str, str]]
  outline_text: list[str]
  story: list[str]


def _parse_context(context: Any) -> _Context:
  ctx = context if isinstance(context, Mapping) else {}
  traits, gender = {}, {}
  for c in ctx.get("characters") or ():
    if isinstance(c, Mapping) and isinstance(c.get("name"), str):
      name = c["name"].strip().lower()
      if name:
        traits[name] = tuple(str(t).lower() for t in c.get("traits") or ())
        gender[name] = str(
            c.get("pronoun") or lex.NAMES.get(c["name"], "")
        ).lower()
  setting = (
      ctx.get("setting") if isinstance(ctx.get("setting"), Mapping) else {}
  )
  places = {str(p).lower() for p in ctx.get("places") or ()}
  if setting.get("place"):
    places.add(str(setting["place"]).lower())
  outline, outline_text = [], []
  for e in ctx.get("outline") or ():
    if isinstance(e, Mapping) and e.get("action") in lex.ACTIONS:
      outline.append(
          {
              k: str(e.get(k) or "").lower()
              for k in ("actor", "action", "target", "recipient", "mood")
          }
      )
      if isinstance(e.get("text"), str):
        outline_text.append(e["text"])
  story = [s for s in ctx.get("story_so_far") or () if isinstance(s, str)]
  return _Context(
      traits=traits,
      gender=gender,
      places=frozenset(places),
      objects=frozenset(str(o).lower() for o in ctx.get("objects") or ()),
      time=str(setting.get("time") or "").lower(),
      outline=outline,
      outline_text=outline_text,
      story=story,
  )


@dataclasses.dataclass
class _Sentence:
  raw: str
  norm: str
  tokens: list[str]
  names: list[tuple[int, str]]  # (position, lowercase name)
  pronouns: list[tuple[int, str]]  # (position, gender)
  places: set[str]
  objects: set[str]
  resolved: set[str] = dataclasses.field(default_factory=set)


def _split(text: str) -> tuple[list[str], bool]:
  """Sentences of `text` (title lines dropped) and whether it was cut."""
  truncated = len(text) > MAX_CHARS
  text = unicodedata.normalize("NFKC", text[:MAX_CHARS])
  text = _TITLE_LINE_RE.sub("\n", text)
  text = _PS_RE.sub("ps", text)
  parts = [p.strip() for p in _SPLIT_RE.split(text)]
  return [p for p in parts if p], truncated


def _lis_weight(positions: list[tuple[Any, float]]) -> tuple[float, set[int]]:
  """Max-weight increasing subsequence over (position, weight) in order."""
  n = len(positions)
  best = [w for _, w in positions]
  prev = [-1] * n
  for i in range(n):
    for j in range(i):
      if positions[j][0] < positions[i][0] and best[j] + positions[i][1] > (
          best[i]
      ):
        best[i], prev[i] = best[j] + positions[i][1], j
  if not n:
    return 0.0, set()
  i = max(range(n), key=lambda k: best[k])
  chosen = set()
  while i >= 0:
    chosen.add(i)
    i = prev[i]
  return max(best), chosen


class _Analyzer:
  """Analyses one text against one context."""

  def __init__(self, context: Any, text: str):
    self.t = matchers.tables()
    self.ctx = _parse_context(context)
    extra = tuple(
        sorted(
            n
            for n in self.ctx.traits
            if n not in {k.lower() for k in lex.NAMES}
        )
    )
    self.extra_names = matchers.extra_names(extra)
    raw_sentences, self.truncated = _split(text)
    self.sentences = [self._sentence(s) for s in raw_sentences]
    self._resolve_pronouns()

  def _sentence(self, raw: str) -> _Sentence:
    norm = matchers.norm(raw)
    names = [(m.start(), m.group(1)) for m in self.t.names.finditer(norm)]
    if self.extra_names is not None:
      names += [
          (m.start(), m.group(1)) for m in self.extra_names.finditer(norm)
      ]
      names.sort()
    return _Sentence(
        raw=raw,
        norm=norm,
        tokens=_TOKEN_RE.findall(norm),
        names=names,
        pronouns=[
            (m.start(), _PRONOUN_GENDER[m.group(1)])
            for m in _PRONOUN_RE.finditer(norm)
        ],
        places={m.group(1) for m in self.t.places.finditer(norm)},
        objects={m.group(1) for m in self.t.objects.finditer(norm)},
    )

  def _resolve_pronouns(self) -> None:
    """Pronouns refer to the last-named story character of that gender."""
    last: dict[str, str] = {}
    for s in self.sentences:
      s.resolved = {n for _, n in s.names if n in self.ctx.traits}
      for _, g in s.pronouns:
        if g in last and not any(
            self.ctx.gender.get(n) == g for n in s.resolved
        ):
          s.resolved.add(last[g])
      for _, n in s.names:
        if n in self.ctx.traits and self.ctx.gender.get(n):
          last[self.ctx.gender[n]] = n

  # ---- coherence
  def _well_formed(self, s: _Sentence) -> bool:
    if not s.tokens:
      return False
    known = sum(
        1
        for w in s.tokens
        if w in self.t.vocab or any(w == n for _, n in s.names)
    )
    if known < 0.75 * len(s.tokens):
      return False
    if len(s.tokens) >= 4:
      top = max(s.tokens.count(w) for w in set(s.tokens))
      if top > 0.5 * len(s.tokens):
        return False
    return True

  def coherence(self, valid: list[bool], duplicates: int) -> dict[str, Any]:
    wrong, jumps, nonseq, contra = [], [], [], []
    tense = 0
    compatible = lex.COMPATIBLE_TIMES.get(self.ctx.time, ())
    missing_end = 0
    for i, s in enumerate(self.sentences):
      if not valid[i]:
        continue
      wrong += [n for _, n in s.names if n not in self.ctx.traits]
      out_places = s.places - self.ctx.places
      out_objects = s.objects - self.ctx.objects
      anchored = bool(
          s.resolved
          or s.pronouns
          or (s.places & self.ctx.places)
          or (s.objects & self.ctx.objects)
      )
      if (out_places or out_objects) and not anchored:
        nonseq.append(sorted(out_objects or out_places)[0])
      else:
        jumps += sorted(out_places)
      if compatible:
        for m in self.t.times.finditer(s.norm):
          if self.t.time_of[m.group(1)] not in compatible:
            contra.append(m.group(1))
      if i < len(self.sentences) - 1 and not _END_RE.search(s.raw):
        missing_end += 1
      if self.t.present.search(s.norm):
        tense += 1  # Stories are told in the past; outlines in the present.
    cut = self.truncated or bool(
        self.sentences and not _END_RE.search(self.sentences[-1].raw)
    )
    ramble = max(0, len(self.sentences) - RAMBLE_SENTENCES) * 0.5
    loops = max(0, duplicates - _FREE_DUPLICATES)
    faults = (
        len(wrong)
        + len(jumps)
        + len(nonseq)
        + len(contra)
        + int(cut)
        + missing_end
        + ramble
        + tense
        + loops
    )
    return {
        "score": max(0.0, 1.0 - _FAULT_PENALTY * faults),
        "wrong_names": tuple(wrong),
        "place_jumps": tuple(jumps),
        "non_sequiturs": tuple(nonseq),
        "contradictions": tuple(contra),
        "cut_off": cut,
        "tense_shifts": tense,
    }

  # ---- originality
  def originality(self) -> dict[str, Any]:
    vivid, bland = [], []
    # Copying the prompt (story so far or outline lines) counts as repeating.
    seen = {
        " ".join(_TOKEN_RE.findall(matchers.norm(s)))
        for s in self.ctx.story + self.ctx.outline_text
    }
    dups, trigrams = 0, []
    for s in self.sentences:
      found = list(self.t.vivid.finditer(s.norm))
      vivid += [m.group(1) for m in found][:_MAX_VIVID_PER_SENTENCE]
      rest = s.norm  # Bland words inside a vivid phrase do not count.
      for m in found:
        rest = rest[: m.start()] + " " * (m.end() - m.start()) + rest[m.end() :]
      bland += [m.group(1) for m in self.t.bland.finditer(rest)]
      key = " ".join(s.tokens)
      if len(s.tokens) >= 3:
        if key in seen:
          dups += 1
        seen.add(key)
      trigrams += list(zip(s.tokens, s.tokens[1:], s.tokens[2:]))
    v, b = len(vivid), len(bland)
    share = (v + 0.25) / (v + b + 0.5)
    rep = 1.0 - len(set(trigrams)) / len(trigrams) if trigrams else 0.0
    dup_frac = dups / max(1, len(self.sentences))
    score = 0.75 * share + 0.25 * max(0.0, 1.0 - 3.0 * rep)
    score *= max(0.0, 1.0 - 1.5 * dup_frac)
    return {
        "score": score,
        "vivid": tuple(vivid),
        "bland": tuple(bland),
        "duplicates": dups,
    }

  # ---- outline
  def _event_credit(self, e: dict[str, str], s: _Sentence) -> float:
    if not self.t.actions[e["action"]].search(s.norm):
      return 0.0
    kind = lex.ACTIONS[e["action"]]["target"]
    names = {n for _, n in s.names} | s.resolved
    actor_ok = e["actor"] in s.resolved
    others = names - {e["actor"]}
    if kind in ("object", "object_person"):
      targets = [e["target"] in s.objects]
      kind_present = bool(s.objects)
    elif kind == "place":
      targets = [e["target"] in s.places]
      kind_present = bool(s.places)
    elif kind == "person":
      targets = [e["target"] in others]
      kind_present = bool(others)
    else:  # secret_person: no credit without the secret itself.
      if "secret" not in s.tokens:
        return 0.0
      targets, kind_present = [True], True
    if kind in ("object_person", "secret_person"):
      targets.append(e["recipient"] in others)
      kind_present = kind_present and bool(others)
    if actor_ok and all(targets):
      return 1.0
    if targets[0] or (actor_ok and kind_present):
      return 0.5
    return 0.0

  def outline(self) -> dict[str, Any]:
    events = self.ctx.outline
    if not events:
      return {"score": 0.5, "credit": (), "in_order": (), "by_sentence": {}}
    credit = [0.0] * len(events)
    where: list[Any] = [None] * len(events)
    by_sentence: dict[int, int] = {}
    for i, s in enumerate(self.sentences):
      best = (0.0, -1)
      for k, e in enumerate(events):
        c = self._event_credit(e, s)
        if c > credit[k]:
          credit[k], where[k] = c, i
        if c > best[0]:
          best = (c, k)
      if best[1] >= 0:
        by_sentence[i] = best[1]
    found = [k for k in range(len(events)) if credit[k] > 0]
    weight, chosen = _lis_weight([(where[k], credit[k]) for k in found])
    in_order = [False] * len(events)
    for j in chosen:
      in_order[found[j]] = True
    rest = sum(credit[k] for j, k in enumerate(found) if j not in chosen)
    score = (weight + 0.5 * rest) / len(events)
    return {
        "score": score,
        "credit": tuple(credit),
        "in_order": tuple(in_order),
        "by_sentence": by_sentence,
    }

  # ---- emotions
  def emotion(self, by_sentence: dict[int, int]) -> dict[str, Any]:
    moods = [e["mood"] for e in self.ctx.outline]
    beats = []
    current = None
    for i, s in enumerate(self.sentences):
      if i in by_sentence:
        current = moods[by_sentence[i]]
      found: dict[str, tuple[str, str]] = {}
      for m in self.t.emotions.finditer(s.norm):
        cat, intensity = self.t.emotion_of[m.group(1)]
        if cat not in found or intensity == "strong":
          found[cat] = (intensity, m.group(1))
      if len(found) > 1:
        found.pop("flat", None)
      for cat, (intensity, word) in found.items():
        if cat == "flat":
          fits = False
        elif current is not None:
          fits = cat == current
        else:
          fits = cat in moods
        beats.append(
            Beat(
                category=cat,
                intensity=intensity,
                fits=fits,
                mood=current or "",
                word=word,
            )
        )
    if not beats:
      return {"score": 0.0, "beats": ()}
    mean = sum(_BEAT_SCORES[(b.intensity, b.fits)] for b in beats) / len(beats)
    return {"score": mean * min(1.0, len(beats) / 2.0), "beats": tuple(beats)}

  # ---- characters
  def _subject(
      self, s: _Sentence, start: int, end: int, dialogue: bool
  ) -> str | None:
    before = [n for p, n in s.names if p < start and n in self.ctx.traits]
    after = [n for p, n in s.names if p >= end and n in self.ctx.traits]
    if dialogue and after:
      return after[0]
    if before:
      return before[-1]
    pronoun_refs = [n for n in s.resolved if n not in {x for _, x in s.names}]
    if pronoun_refs:
      return pronoun_refs[0]
    return after[0] if after else None

  def characters(self) -> dict[str, Any]:
    hits = []
    for s in self.sentences:
      for m in self.t.traits.finditer(s.norm):
        phrase = m.group(1)
        who = self._subject(s, m.start(), m.end(), phrase in self.t.dialogue)
        if who is None:
          continue
        own = self.ctx.traits[who]
        for trait in self.t.trait_of[phrase]:
          if trait in own:
            hits.append(TraitHit(who, trait, True, phrase))
          elif lex.OPPOSITE.get(trait) in own:
            hits.append(TraitHit(who, lex.OPPOSITE[trait], False, phrase))
    good = sum(h.consistent for h in hits)
    bad = len(hits) - good
    mentioned = any(s.resolved for s in self.sentences)
    prior = 0.35 if mentioned else 0.1
    return {"score": (good + prior) / (good + bad + 1.0), "hits": tuple(hits)}

  def run(self) -> Analysis:
    if not self.sentences:
      return _zero_analysis()
    valid = [self._well_formed(s) for s in self.sentences]
    n_valid = sum(valid)
    gate = (n_valid / len(valid)) * min(1.0, n_valid / MIN_SENTENCES)
    orig = self.originality()
    co = self.coherence(valid, orig["duplicates"])
    out = self.outline()
    emo = self.emotion(out["by_sentence"])
    chars = self.characters()
    scores = {
        "coherence": co["score"],
        "originality": orig["score"],
        "emotional_engagement": emo["score"],
        "outline_adherence": out["score"],
        "character_consistency": chars["score"],
    }
    scores = {
        k: round(min(1.0, max(0.0, v * gate)), 6) for k, v in scores.items()
    }
    return Analysis(
        scores=scores,
        num_sentences=len(self.sentences),
        num_words=sum(len(s.tokens) for s in self.sentences),
        malformed=len(valid) - n_valid,
        wrong_names=co["wrong_names"],
        place_jumps=co["place_jumps"],
        non_sequiturs=co["non_sequiturs"],
        contradictions=co["contradictions"],
        cut_off=co["cut_off"],
        tense_shifts=co["tense_shifts"],
        vivid=orig["vivid"],
        bland=orig["bland"],
        duplicates=orig["duplicates"],
        beats=emo["beats"],
        event_credit=out["credit"],
        event_in_order=out["in_order"],
        trait_hits=chars["hits"],
    )


def analyze_detailed(context: Mapping[str, Any], text: str) -> Analysis:
  """Scores `text` against `context` with evidence; never raises."""
  try:
    if not isinstance(text, str):
      text = "" if text is None else str(text)
    return _Analyzer(context, text).run()
  except Exception:  # pylint: disable=broad-except
    # Scoring must never crash a training or evaluation loop.
    return _zero_analysis()


def analyze(context: Mapping[str, Any], text: str) -> dict[str, float]:
  """Per-dimension quality of `text` in [0, 1]; never raises."""
  return dict(analyze_detailed(context, text).scores)
