"""The teacher: writes GenRM reasoning chains comparing two continuations.

Owns the distillation target for GenRM SFT. The teacher reads both
continuations through `quality.analyze_detailed`, writes one short line per
dimension that names concrete evidence (which outline event is skipped,
which trait is contradicted, which stranger or place appears, which
sentence repeats...), then a final line `Verdict: [[1]]` or
`Verdict: [[2]]` referring to presentation positions.

The teacher is deliberately an imperfect annotator, distinct from the
hidden rater: its own dimension weights (`TEACHER_WEIGHTS`, perturbed by
its seed), a position bias (a bonus for whichever continuation is shown
first) and Gaussian noise on each judgement. Because of the bias it
sometimes prefers different stories in the two presentation orders; the
consistency filter (`genrm.consistency`) drops those pairs.

Chains are compact (about 60-90 words) so that judge prompt plus chain fit
a 512-token model. The dimension lines use short labels (`Coherence`,
`Originality`, `Emotion`, `Outline`, `Characters`).
"""

from __future__ import annotations

import random
from typing import Any, Mapping

import numpy as np

from rlcs_jax.data import quality
from rlcs_jax.data import storyworld_lexicon as lex

TEACHER_WEIGHTS: dict[str, float] = {
    "coherence": 0.20,
    "originality": 0.25,
    "emotional_engagement": 0.20,
    "outline_adherence": 0.20,
    "character_consistency": 0.15,
}
DEFAULT_POSITION_BIAS = 0.06
DEFAULT_NOISE = 0.03
LABELS: dict[str, str] = {
    "coherence": "Coherence",
    "originality": "Originality",
    "emotional_engagement": "Emotion",
    "outline_adherence": "Outline",
    "character_consistency": "Characters",
}
_TIE = 0.05  # Score gap below which a dimension is called even.
MAX_WORDS = 90  # Longer chains fall back to short generic phrases.

_POSITIVE: dict[str, tuple[str, ...]] = {
    "coherence": (
        "flows",
        "holds together",
        "stays on track",
        "reads smoothly",
    ),
    "originality": ("varies its wording", "sounds fresh"),
    "emotional_engagement": ("carries real feeling", "makes the feelings land"),
    "outline_adherence": ("follows the outline",),
    "character_consistency": ("keeps the characters true",),
}
_WEAKER: dict[str, tuple[str, ...]] = {
    "coherence": ("is a little less clear", "is slightly choppier"),
    "originality": ("is plainer", "is more predictable"),
    "emotional_engagement": ("is more muted", "feels weaker"),
    "outline_adherence": ("is looser with the outline",),
    "character_consistency": ("shows the characters less clearly",),
}


def _title(name: str, context: Mapping[str, Any]) -> str:
  for c in context.get("characters") or ():
    if isinstance(c, Mapping) and str(c.get("name", "")).lower() == name:
      return str(c["name"])
  return name.capitalize()


class _Evidence:
  """Turns one Analysis into short phrases for each dimension."""

  def __init__(
      self, a: quality.Analysis, context: Mapping[str, Any], rng: random.Random
  ):
    self.a, self.ctx, self.rng = a, context, rng

  def flaw(self, dim: str) -> str | None:
    return getattr(self, "_" + dim)(positive=False)

  def merit(self, dim: str) -> str | None:
    return getattr(self, "_" + dim)(positive=True)

  def _coherence(self, positive: bool) -> str | None:
    a = self.a
    if positive:
      return None
    flaws = []
    if a.malformed:
      flaws.append("has garbled sentences")
    if a.wrong_names:
      flaws.append(
          f"brings in {_title(a.wrong_names[0], self.ctx)}, who is "
          "not in the story"
      )
    if a.place_jumps:
      flaws.append(
          f"jumps to the {lex.PLACES.get(a.place_jumps[0], a.place_jumps[0])}"
      )
    if a.non_sequiturs:
      head = a.non_sequiturs[0]
      shown = lex.OBJECTS.get(head, lex.PLACES.get(head, head))
      flaws.append(f"drifts to an unrelated {shown}")
    if a.contradictions:
      time = (self.ctx.get("setting") or {}).get("time", "")
      flaws.append(f"mentions {a.contradictions[0]} although it is {time}")
    if a.cut_off:
      flaws.append("stops mid-sentence")
    if a.tense_shifts:
      flaws.append("slips into the outline's present tense")
    if a.num_sentences < quality.MIN_SENTENCES:
      flaws.append("is too short to follow")
    return self.rng.choice(flaws) if flaws else None

  def _originality(self, positive: bool) -> str | None:
    a = self.a
    if positive:
      if a.vivid and len(a.vivid) >= len(a.bland):
        return f"has fresh phrasing like '{self.rng.choice(a.vivid)}'"
      return None
    flaws = []
    if a.duplicates:
      flaws.append(
          "repeats a sentence"
          if a.duplicates == 1
          else f"repeats {a.duplicates} sentences"
      )
    if a.bland and len(a.bland) > len(a.vivid):
      flaws.append(f"leans on plain words like '{self.rng.choice(a.bland)}'")
    return self.rng.choice(flaws) if flaws else None

  def _emotional_engagement(self, positive: bool) -> str | None:
    beats = self.a.beats
    if positive:
      strong = [b for b in beats if b.fits and b.intensity == "strong"]
      if strong:
        b = self.rng.choice(strong)
        return f"conveys real {lex.EMOTION_NOUNS[b.category]}"
      return None
    if not beats:
      return "shows little feeling"
    wrong = [b for b in beats if not b.fits and b.category != "flat"]
    flat = [b for b in beats if b.category == "flat"]
    flaws = []
    if wrong:
      b = self.rng.choice(wrong)
      mood = lex.EMOTION_NOUNS.get(b.mood, "")
      flaws.append(
          f"sounds {lex.EMOTION_ADJECTIVES[b.category]}"
          + (f" where the moment calls for {mood}" if mood else " out of place")
      )
    if flat:
      flaws.append(f"stays flat ('{flat[0].word}')")
    if not flaws and all(b.intensity != "strong" for b in beats):
      flaws.append("keeps the feelings faint")
    return self.rng.choice(flaws) if flaws else None

  def _outline_adherence(self, positive: bool) -> str | None:
    credit, order = self.a.event_credit, self.a.event_in_order
    n = len(credit)
    if not n:
      return None
    if positive:
      full = sum(c == 1.0 for c in credit)
      if full == n and all(order):
        return (
            "covers both events in order"
            if n == 2
            else f"covers all {n} events in order"
        )
      return f"covers {full} of {n} events" if full else None
    missing = [i for i, c in enumerate(credit) if c == 0.0]
    partial = [i for i, c in enumerate(credit) if c == 0.5]
    flaws = []
    if missing:
      flaws.append(f"skips '{self._event(self.rng.choice(missing))}'")
    if partial:
      flaws.append(f"garbles '{self._event(self.rng.choice(partial))}'")
    if not flaws and not all(o for o, c in zip(order, credit) if c):
      flaws.append("tells the events out of order")
    return self.rng.choice(flaws) if flaws else None

  def _event(self, i: int) -> str:
    """Outline event `i` as quoted in a chain (without its full stop)."""
    events = [
        e
        for e in self.ctx.get("outline") or ()
        if isinstance(e, Mapping) and e.get("action") in lex.ACTIONS
    ]
    text = str(events[i].get("text") or "") if i < len(events) else ""
    return text.rstrip(".") or f"event {i + 1}"

  def _character_consistency(self, positive: bool) -> str | None:
    hits = self.a.trait_hits
    if positive:
      good = [h for h in hits if h.consistent]
      if good:
        h = self.rng.choice(good)
        return f"keeps {_title(h.name, self.ctx)} {h.trait}"
      return None
    bad = [h for h in hits if not h.consistent]
    if bad:
      h = self.rng.choice(bad)
      return (
          f"makes {h.trait} {_title(h.name, self.ctx)} act "
          f"{lex.OPPOSITE[h.trait]}"
      )
    if not hits:
      return "leaves the characters flat"
    return None


class Teacher:
  """Writes reasoning chains with its own weights, position bias and noise."""

  def __init__(
      self,
      seed: int = 0,
      position_bias: float = DEFAULT_POSITION_BIAS,
      noise: float = DEFAULT_NOISE,
  ):
    gen = np.random.default_rng([seed, 0x7EAC])
    alpha = 100.0 * np.array([TEACHER_WEIGHTS[d] for d in quality.DIMENSIONS])
    self.weights: dict[str, float] = {
        d: float(w) for d, w in zip(quality.DIMENSIONS, gen.dirichlet(alpha))
    }
    self.position_bias = float(position_bias)
    self.noise = float(noise)

  def value(self, analysis: quality.Analysis) -> float:
    """The teacher's noise-free opinion of one continuation."""
    return float(
        sum(self.weights[d] * analysis.scores[d] for d in quality.DIMENSIONS)
    )

  def judge(
      self,
      context: Mapping[str, Any],
      first: str,
      second: str,
      rng: random.Random,
  ) -> tuple[str, int]:
    """Reasoning chain and verdict (1 or 2) for `first` shown before."""
    return self.judge_analyses(
        context,
        quality.analyze_detailed(context, first),
        quality.analyze_detailed(context, second),
        rng,
    )

  def judge_analyses(
      self,
      context: Mapping[str, Any],
      first: quality.Analysis,
      second: quality.Analysis,
      rng: random.Random,
  ) -> tuple[str, int]:
    """Like `judge`, from precomputed analyses (first shown first)."""
    margin = (
        self.value(first)
        + self.position_bias
        - self.value(second)
        + rng.gauss(0.0, self.noise)
    )
    verdict = 1 if margin > 0 else 2
    ev = (_Evidence(first, context, rng), _Evidence(second, context, rng))
    lines = [
        self._line(d, first.scores[d], second.scores[d], ev, rng)
        for d in quality.DIMENSIONS
    ]
    # Keep the chain short: shorten the longest lines to generic phrases.
    while sum(len(line.split()) for line in lines) > MAX_WORDS - 2:
      k = max(range(len(lines)), key=lambda i: len(lines[i].split()))
      d = quality.DIMENSIONS[k]
      short = self._line(
          d, first.scores[d], second.scores[d], ev, rng, generic=True
      )
      if len(short.split()) >= len(lines[k].split()):
        break
      lines[k] = short
    lines.append(f"Verdict: [[{verdict}]]")
    return "\n".join(lines), verdict

  def _line(
      self,
      dim: str,
      s1: float,
      s2: float,
      ev: tuple[_Evidence, _Evidence],
      rng: random.Random,
      generic: bool = False,
  ) -> str:
    label = LABELS[dim]
    if generic:
      if abs(s1 - s2) < _TIE:
        return f"{label}: both are about even."
      better = 1 if s1 > s2 else 2
      return (
          f"{label}: Continuation {better} {_POSITIVE[dim][0]}; "
          f"Continuation {3 - better} {_WEAKER[dim][0]}."
      )
    if abs(s1 - s2) < _TIE:
      f1, f2 = ev[0].flaw(dim), ev[1].flaw(dim)
      if f1 and f2:
        return f"{label}: Continuation 1 {f1}, and Continuation 2 {f2}."
      if f1 or f2:
        k, f = (1, f1) if f1 else (2, f2)
        return f"{label}: close; Continuation {k} {f}."
      return f"{label}: both are about even."
    better = 0 if s1 > s2 else 1
    good = ev[better].merit(dim) or rng.choice(_POSITIVE[dim])
    bad = ev[1 - better].flaw(dim) or rng.choice(_WEAKER[dim])
    return (
        f"{label}: Continuation {better + 1} {good}; "
        f"Continuation {2 - better} {bad}."
    )
