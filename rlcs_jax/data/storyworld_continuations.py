"""StoryWorld continuations at chosen per-dimension quality levels.

Owns continuations of a story context (`storyworld.sample_context`) whose
quality is controlled per dimension by latent levels in [0, 1]
(`quality.DIMENSIONS`), and the sampling of those levels. A level of 1
writes the best continuation the world allows; lower levels degrade that
dimension on purpose:

* coherence: inserts sentences naming strangers, jumping to places outside
  the story, unrelated non-sequiturs, times of day that contradict the
  setting, and a cut-off last sentence.
* originality: bland phrasings instead of vivid ones, duplicated sentences
  and sentences copied from the plot so far.
* emotional_engagement: emotions that are weak, wrong for the beat, or
  flat instead of strong and fitting.
* outline_adherence: drops outline events, realises them with the wrong
  actor or target, and tells them out of order.
* character_consistency: characters act or speak against their traits.

Public API: `sample_levels` (SFT-style levels around a centre),
`sample_pair_levels` (the two sides of a preference pair), `continuation` /
`continuation_sentences` / `plan_continuation` (the same text as a string,
sentences, or sentences tagged with their kind).

Every function takes its randomness from an explicit `random.Random`; the
same seed gives the same output. Continuations have 3-8 sentences and at
most `MAX_WORDS` words, in the past tense.
"""

from __future__ import annotations

import math
import random
from typing import Any, Mapping

from rlcs_jax.data import storyworld
from rlcs_jax.data import storyworld_lexicon as lex
from rlcs_jax.data import storyworld_phrases as phr

DIMENSIONS = lex.DIMENSIONS
MAX_SENTENCES = 8
MIN_SENTENCES = 3
MAX_WORDS = 120


def _stochastic_round(x: float, rng: random.Random) -> int:
  """Rounds up with probability equal to the fractional part."""
  base = math.floor(x)
  return int(base + (1 if rng.random() < x - base else 0))


def _clip01(x: float) -> float:
  return min(1.0, max(0.0, float(x)))


def sample_levels(
    rng: random.Random, center: float = 0.5, spread: float = 0.2
) -> dict[str, float]:
  """Per-dimension latent levels: `center` plus Gaussian noise, clipped."""
  return {d: _clip01(rng.gauss(center, spread)) for d in DIMENSIONS}


def sample_pair_levels(
    rng: random.Random,
) -> tuple[dict[str, float], dict[str, float]]:
  """Levels for the two sides of a preference pair.

  Each side gets an overall quality uniform in [0.05, 0.95] plus per-
  dimension noise, so pairs range from clear-cut to near ties.
  """
  a, b = rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.95)
  return sample_levels(rng, a, 0.15), sample_levels(rng, b, 0.15)


# --------------------------------------------------------------------------
# Continuation planning. A plan is a list of items; each item is a dict with
# "kind", "text" and "prio" (lower priority is dropped first when over the
# sentence or word budget).


class _Writer:
  """Holds one continuation's context, levels and randomness."""

  def __init__(
      self,
      context: Mapping[str, Any],
      levels: Mapping[str, float],
      rng: random.Random,
  ):
    self.ctx = context
    self.rng = rng
    self.lv = {d: _clip01(levels.get(d, 0.5)) for d in DIMENSIONS}
    self.chars = {c["name"]: c for c in context["characters"]}
    self.names = list(self.chars)
    self.p_vivid = 0.02 + 0.96 * self.lv["originality"]
    # Phrases of the story so far are not reused (that would be a repeat).
    story = " ".join(context["story_so_far"])
    self.used: set[str] = {
        p for ps in lex.TRAIT_ACTIONS.values() for p in ps if p in story
    }

  # ---- small renderers
  def pick(self, pool) -> str:
    """A random template from `pool`, avoiding ones already used."""
    fresh = [t for t in pool if t not in self.used]
    choice = self.rng.choice(fresh or list(pool))
    self.used.add(choice)
    return choice

  def style(self) -> str:
    return "vivid" if self.rng.random() < self.p_vivid else "bland"

  def pron(self, name: str) -> dict[str, str]:
    return lex.PRONOUNS[self.chars[name]["pronoun"]]

  def clause(self, template: str, name: str, use_pronoun: bool) -> str:
    if use_pronoun:
      p = self.pron(name)
      return template.format(X=p["S"], O=p["O"], P=p["P"])
    return template.format(X=name, O=name, P=f"{name}'s")

  def vp(self, action: str, target: str, recipient: str) -> str:
    templates = lex.ACTIONS[action][self.style()]
    shown = storyworld.target_phrase({"action": action, "target": target})
    return self.rng.choice(templates).format(T=shown, R=recipient)

  def description(self, time: str) -> str:
    place = lex.PLACES.get(self.ctx["setting"]["place"], "room")
    pool = phr.DESCRIPTIONS[time][self.style()]
    return self.pick(pool).format(T=place)

  # ---- outline events
  def events(self) -> list[dict[str, Any]]:
    outline = list(self.ctx["outline"])
    n = len(outline)
    level = self.lv["outline_adherence"]
    full = set(
        self.rng.sample(range(n), _stochastic_round(level * n, self.rng))
    )
    items = []
    for i, event in enumerate(outline):
      actor, target = event["actor"], event["target"]
      recipient = event.get("recipient", "")
      if i not in full:
        if self.rng.random() < 0.5:
          continue
        wrong = self._wrong_version(event)
        if wrong is None:
          continue
        actor, target, recipient = wrong
      text = f"{actor} {self.vp(event['action'], target, recipient)}"
      items.append(
          {
              "kind": "event",
              "event": i,
              "actor": actor,
              "mood": event["mood"],
              "core": text,
              "trait": None,
              "emotion": None,
              "prio": 9,
          }
      )
    if len(items) >= 2 and self.rng.random() < max(0.0, 0.7 - level):
      order = list(range(len(items)))
      while order == sorted(order):
        self.rng.shuffle(order)
      items = [items[j] for j in order]
    return items

  def _wrong_version(self, event):
    """The event done by the wrong character or to the wrong target."""
    kind = lex.ACTIONS[event["action"]]["target"]
    actor, target = event["actor"], event["target"]
    recipient = event.get("recipient", "")
    others = [n for n in self.names if n not in (actor, target, recipient)]
    if others and self.rng.random() < 0.5:
      return self.rng.choice(others), target, recipient
    if kind in ("object", "object_person"):
      pool = lex.ACTIONS[event["action"]]["pool"] or storyworld.OBJECTS
      return (
          actor,
          self.rng.choice([o for o in pool if o != target]),
          (recipient),
      )
    if kind == "place":
      alts = [p for p in self.ctx["places"] if p != target]
      return (actor, self.rng.choice(alts), recipient) if alts else None
    if kind == "person":
      alts = [n for n in self.names if n not in (actor, target)]
      return (actor, self.rng.choice(alts), recipient) if alts else None
    return (self.rng.choice(others), target, recipient) if others else None

  # ---- character traits
  def trait_items(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    level = self.lv["character_consistency"]
    m = 3 if self.rng.random() < 0.5 else 2
    good = _stochastic_round(level * m, self.rng)
    flags = [True] * good + [False] * (m - good)
    self.rng.shuffle(flags)
    speakers = self.rng.sample(self.names, len(self.names))
    items = []
    for k, consistent in enumerate(flags):
      name = speakers[k % len(speakers)]
      trait = self.rng.choice(self.chars[name]["traits"])
      shown = trait if consistent else lex.OPPOSITE[trait]
      if self.rng.random() < 0.35:
        line = self.pick(lex.TRAIT_LINES[shown])
        tag = self.rng.choice(phr.SPEECH_TAGS[self.style()])
        items.append(
            {
                "kind": "trait",
                "text": f'"{line}," {name} {tag}.',
                "name": name,
                "prio": 6,
            }
        )
        continue
      action = self.pick(lex.TRAIT_ACTIONS[shown])
      hosts = [e for e in events if e["actor"] == name and e["trait"] is None]
      if hosts and self.rng.random() < 0.5:
        host = self.rng.choice(hosts)
        host["trait"] = action
        continue
      items.append(
          {
              "kind": "trait",
              "text": f"{name} {action}.",
              "name": name,
              "prio": 6,
          }
      )
    return items

  # ---- emotions
  def emotion_clause(self, mood: str) -> str:
    v = self.lv["emotional_engagement"] + self.rng.gauss(0.0, 0.1)
    if v > 0.72:
      return self.pick(phr.EMOTION_CLAUSES[mood]["strong"])
    if v > 0.45:
      return self.pick(phr.EMOTION_CLAUSES[mood]["mild"])
    if v > 0.22:
      other = self.rng.choice([e for e in lex.EMOTIONS if e != mood])
      return self.pick(
          phr.EMOTION_CLAUSES[other][self.rng.choice(("strong", "mild"))]
      )
    return self.pick(phr.FLAT_CLAUSES)

  def emotion_items(
      self, events: list[dict[str, Any]]
  ) -> list[tuple[int, dict[str, Any]]]:
    """Attaches emotion beats to events; returns standalone ones by anchor."""
    beats = 2 if self.rng.random() < 0.7 else 3
    standalone = []
    for k in range(beats):
      if events:
        anchor = k % len(events)
        event = events[anchor]
        mood = event["mood"]
      else:
        anchor, event = -1, None
        mood = (
            self.ctx["outline"][0]["mood"] if self.ctx["outline"] else ("joy")
        )
      template = self.emotion_clause(mood)
      if (
          event is not None
          and event["emotion"] is None
          and (self.rng.random() < 0.6)
      ):
        event["emotion"] = self.clause(template, event["actor"], True)
        continue
      who = self.rng.choice(self.names)
      text = storyworld.capitalize(self.clause(template, who, False)) + "."
      standalone.append(
          (anchor, {"kind": "emotion", "text": text, "name": who, "prio": 5})
      )
    return standalone

  # ---- coherence faults
  def faults(self, plan: list[dict[str, Any]]) -> None:
    level = self.lv["coherence"]
    n_err = min(4, _stochastic_round((1.0 - level) * 3.2, self.rng))
    kinds = [
        "wrong_name",
        "place_jump",
        "non_sequitur",
        "contradiction",
        "cut_off",
    ]
    chosen = []
    for _ in range(n_err):
      kind = self.rng.choice(kinds)
      if kind in ("contradiction", "cut_off"):
        kinds.remove(kind)
      chosen.append(kind)
    outsiders = [n for n in storyworld.NAMES if n not in self.chars]
    far_places = [p for p in storyworld.PLACES if p not in self.ctx["places"]]
    far_objects = [
        o for o in storyworld.OBJECTS if o not in self.ctx["objects"]
    ]
    for kind in chosen:
      if kind == "cut_off":
        name = self.rng.choice(self.names)
        words = self.rng.choice(
            lex.TRAIT_ACTIONS[self.rng.choice(self.chars[name]["traits"])]
        ).split()
        keep = max(1, len(words) // 2)
        text = f"{name} " + " ".join(words[:keep])
        plan.append({"kind": "cut_off", "text": text, "prio": 8})
        continue
      if kind == "contradiction":
        time = self.ctx["setting"]["time"]
        bad = [
            t
            for t in lex.TIMES
            if t not in lex.COMPATIBLE_TIMES.get(time, (time,))
        ]
        text = self.description(self.rng.choice(bad))
        descs = [it for it in plan if it["kind"] == "description"]
        if descs:
          descs[0].update(kind="contradiction", text=text, prio=8)
          continue
      elif kind == "wrong_name":
        text = self.rng.choice(phr.STRANGER_LINES).format(
            N=self.rng.choice(outsiders)
        )
      elif kind == "place_jump":
        text = self.rng.choice(phr.PLACE_JUMPS).format(
            N=self.rng.choice(self.names),
            L=lex.PLACES[self.rng.choice(far_places)],
        )
      else:
        text = self.rng.choice(phr.NON_SEQUITURS).format(
            T=lex.OBJECTS[self.rng.choice(far_objects)],
            L=lex.PLACES[self.rng.choice(far_places)],
        )
      pos = self.rng.randint(1, max(1, len(plan)))
      plan.insert(pos, {"kind": kind, "text": text, "prio": 8})

  # ---- originality: repetition
  def duplicates(self, plan: list[dict[str, Any]]) -> None:
    n_dup = min(
        2,
        _stochastic_round(
            max(0.0, 0.5 - self.lv["originality"]) * 5.0, self.rng
        ),
    )
    for _ in range(n_dup):
      sources = [
          i
          for i, it in enumerate(plan)
          if it["kind"]
          in ("event", "trait", "emotion", "description", "neutral")
      ]
      if self.rng.random() < 0.3 or not sources:
        text = self.rng.choice(self.ctx["story_so_far"][:2])
        pos = self.rng.randint(0, len(plan))
      else:
        src = self.rng.choice(sources)
        text = plan[src]["text"]
        pos = self.rng.randint(src + 1, len(plan))
      plan.insert(pos, {"kind": "duplicate", "text": text, "prio": 7})

  def transitions(self, plan: list[dict[str, Any]]) -> None:
    for it in plan[1:]:
      if (
          it["kind"] in ("event", "trait")
          and it["text"][:1].isupper()
          and (self.rng.random() < 0.3)
      ):
        it["text"] = self.pick(phr.TRANSITIONS[self.style()]) + " " + it["text"]

  def plan(self) -> list[dict[str, Any]]:
    events = self.events()
    traits = self.trait_items(events)
    emotions = self.emotion_items(events)
    for e in events:
      core = e["core"]
      if e["trait"]:
        core = f"{e['actor']} {e['trait']} and " + core[len(e["actor"]) + 1 :]
      if e["emotion"]:
        core += ", and " + e["emotion"]
      e["text"] = core + "."
    plan: list[dict[str, Any]] = list(events)
    for anchor, item in sorted(emotions, key=lambda x: -x[0]):
      plan.insert(anchor + 1, item)
    for item in traits:
      plan.insert(self.rng.randint(0, len(plan)), item)
    if self.rng.random() < 0.5:
      plan.insert(
          self.rng.choice((0, min(1, len(plan)))),
          {
              "kind": "description",
              "text": self.description(self.ctx["setting"]["time"]),
              "prio": 2,
          },
      )
    while len(plan) < MIN_SENTENCES:
      names = self.rng.sample(self.names, 2)
      plan.insert(
          self.rng.randint(0, len(plan)),
          {
              "kind": "neutral",
              "prio": 1,
              "text": self.rng.choice(phr.NEUTRAL_LINES).format(
                  N=names[0], M=names[1]
              ),
          },
      )
    self.transitions(plan)
    self.faults(plan)
    self.duplicates(plan)
    cut = [it for it in plan if it["kind"] == "cut_off"]
    plan = [it for it in plan if it["kind"] != "cut_off"] + cut
    return _fit_budget(plan)


def _words(plan: list[dict[str, Any]]) -> int:
  return sum(len(it["text"].split()) for it in plan)


def _fit_budget(plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Drops the lowest-priority items until within sentence/word budgets."""
  while len(plan) > MIN_SENTENCES and (
      len(plan) > MAX_SENTENCES or _words(plan) > MAX_WORDS
  ):
    low = min(range(len(plan)), key=lambda i: (plan[i]["prio"], -i))
    del plan[low]
  return plan


def plan_continuation(
    context: Mapping[str, Any], levels: Mapping[str, float], rng: random.Random
) -> list[dict[str, Any]]:
  """The planned sentences: dicts with "kind", "text" and "prio".

  `kind` is one of event, trait, emotion, description, neutral, duplicate,
  or a coherence fault (wrong_name, place_jump, non_sequitur,
  contradiction, cut_off); `prio` orders what to drop first (lowest) when
  a caller must shorten the text.
  """
  plan = _Writer(context, levels, rng).plan()
  return [
      {"kind": it["kind"], "text": it["text"], "prio": it["prio"]}
      for it in plan
  ]


def continuation_sentences(
    context: Mapping[str, Any], levels: Mapping[str, float], rng: random.Random
) -> list[str]:
  """The sentences of one continuation at the given latent levels."""
  return [it["text"] for it in plan_continuation(context, levels, rng)]


def continuation(
    context: Mapping[str, Any], levels: Mapping[str, float], rng: random.Random
) -> str:
  """One continuation of `context` at the given per-dimension levels."""
  return " ".join(continuation_sentences(context, levels, rng))
