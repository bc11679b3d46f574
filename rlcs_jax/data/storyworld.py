"""StoryWorld contexts: seeded story contexts and the policy prompt.

Owns the seeded generation of RLCS-shaped story contexts (characters with
traits, a setting, the plot so far, an outline of the next part) and the
rendered policy prompt. Continuations of a context, written at chosen
quality levels, live in `storyworld_continuations.py`.

Public API: `sample_context`, `build_policy_prompt`, `context_key` (for
de-duplication), `target_phrase` (the text shown for an event's target),
and what the continuations share with it: `capitalize` and the sorted
`NAMES`, `PLACES` and `OBJECTS` pools.

Every function takes its randomness from an explicit `random.Random`; the
same seed gives the same output. Rendered prompts stay under about 80
words. Texts are in the past tense; outline lines are in the present tense.

Context schema (JSON-serialisable, everything `quality.analyze` needs):

    {"characters": [{"name": "Mira", "pronoun": "she",
                     "traits": ["brave", "kind"]}, ...],     # 2-3
     "setting": {"place": "lighthouse", "time": "night"},
     "places": ["lighthouse", "harbor"],   # place heads the story may visit
     "objects": ["key", "map"],            # object heads in the story
     "story_so_far": ["It was night when ...", ...],        # 2-3 sentences
     "outline": [{"actor": "Mira", "action": "find", "target": "key",
                  "recipient": "", "mood": "joy",
                  "text": "Mira finds the silver key."}, ...]}   # 2-3

`target` is an object head, a place head, a character name, or "secret"
(action "reveal"); `recipient` is a character name for "give"/"reveal".
"""

from __future__ import annotations

import json
import random
from typing import Any, Mapping

from rlcs_jax.data import storyworld_lexicon as lex
from rlcs_jax.data import storyworld_phrases as phr

NAMES = tuple(sorted(lex.NAMES))
PLACES = tuple(sorted(lex.PLACES))
OBJECTS = tuple(sorted(lex.OBJECTS))
_ACTIONS = tuple(sorted(lex.ACTIONS))


def capitalize(text: str) -> str:
  """Uppercases the first character (`str.capitalize` lowercases the rest)."""
  return text[:1].upper() + text[1:]


def context_key(context: Mapping[str, Any]) -> str:
  """A canonical string identifying a context (for de-duplication)."""
  return json.dumps(context, sort_keys=True, separators=(",", ":"))


def target_phrase(event: Mapping[str, Any]) -> str:
  """The text shown for an event's target ("silver key", "Tomas")."""
  kind = lex.ACTIONS[event["action"]]["target"]
  target = event["target"]
  if kind in ("object", "object_person"):
    return lex.OBJECTS.get(target, target)
  if kind == "place":
    return lex.PLACES.get(target, target)
  return target


def _event_text(actor: str, action: str, target: str, recipient: str) -> str:
  spec = lex.ACTIONS[action]
  shown = target_phrase({"action": action, "target": target})
  return f"{actor} " + spec["present"].format(T=shown, R=recipient) + "."


def _pick_object(action: str, used: list[str], rng: random.Random) -> str:
  pool = lex.ACTIONS[action]["pool"] or OBJECTS
  reusable = [o for o in used if o in pool]
  if reusable and rng.random() < 0.35:
    return rng.choice(reusable)
  return rng.choice(pool)


def sample_context(rng: random.Random) -> dict[str, Any]:
  """Samples one story context (see the module docstring for the schema)."""
  n_chars = 2 if rng.random() < 0.7 else 3
  names = rng.sample(NAMES, n_chars)
  characters = []
  for name in names:
    axes = rng.sample(lex.TRAIT_AXES, 1 if rng.random() < 0.4 else 2)
    characters.append(
        {
            "name": name,
            "pronoun": lex.NAMES[name],
            "traits": [rng.choice(axis) for axis in axes],
        }
    )
  setting = rng.choice(PLACES)
  time = rng.choice(lex.TIMES)
  places, objects, outline = [setting], [], []
  current = setting
  for action in rng.sample(_ACTIONS, 2 if rng.random() < 0.45 else 3):
    spec = lex.ACTIONS[action]
    actor = rng.choice(names)
    others = [n for n in names if n != actor]
    recipient = ""
    if spec["target"] == "object":
      target = _pick_object(action, objects, rng)
    elif spec["target"] == "object_person":
      target = _pick_object(action, objects, rng)
      recipient = rng.choice(others)
    elif spec["target"] == "secret_person":
      target, recipient = "secret", rng.choice(others)
    elif spec["target"] == "person":
      target = rng.choice(others)
    elif action == "escape":
      target = current
    else:
      target = rng.choice([p for p in PLACES if p not in places])
      if action == "travel":
        current = target
    if spec["target"] in ("object", "object_person") and target not in (
        objects
    ):
      objects.append(target)
    if spec["target"] == "place" and target not in places:
      places.append(target)
    outline.append(
        {
            "actor": actor,
            "action": action,
            "target": target,
            "recipient": recipient,
            "mood": rng.choice(spec["moods"]),
            "text": _event_text(actor, action, target, recipient),
        }
    )
  motive_object = (
      objects[0]
      if objects and rng.random() < 0.6
      else (rng.choice([o for o in OBJECTS if o not in objects]))
  )
  if motive_object not in objects:
    objects.append(motive_object)
  a, b = names[0], names[1]
  time_phrase = lex.TIME_PHRASES[time]
  story = [
      rng.choice(phr.STORY_OPENERS).format(
          A=a,
          B=b,
          L=lex.PLACES[setting],
          time=time_phrase,
          time_cap=capitalize(time_phrase),
      ),
      rng.choice(phr.STORY_MOTIVES).format(
          A=rng.choice(names), T=lex.OBJECTS[motive_object]
      ),
  ]
  if rng.random() < 0.5:
    character = rng.choice(characters)
    trait = rng.choice(character["traits"])
    story.append(f"{character['name']} {rng.choice(lex.TRAIT_ACTIONS[trait])}.")
  return {
      "characters": characters,
      "setting": {"place": setting, "time": time},
      "places": places,
      "objects": objects,
      "story_so_far": story,
      "outline": outline,
  }


def build_policy_prompt(context: Mapping[str, Any]) -> str:
  """Renders the policy prompt: characters, setting, story so far, outline."""
  chars = "; ".join(
      f"{c['name']} ({', '.join(c['traits'])})" for c in context["characters"]
  )
  setting = context["setting"]
  place = lex.PLACES.get(setting["place"], setting["place"])
  time = lex.TIME_PHRASES.get(setting["time"], setting["time"])
  outline = " ".join(
      f"{i}. {e['text'][:-1]} ({e['mood']})."
      for i, e in enumerate(context["outline"], start=1)
  )
  return (
      f"Characters: {chars}.\n"
      f"Setting: the {place}, {time}.\n"
      f"Story so far: {' '.join(context['story_so_far'])}\n"
      f"Outline: {outline}\n"
      "Continue the story."
  )
