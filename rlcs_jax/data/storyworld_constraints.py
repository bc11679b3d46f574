"""IFEval-format constraints on StoryWorld prompts, and compliant answers.

Owns the constraint side of StoryWorld: sampling 0-3 satisfiable IFEval
instructions for a story context (ids and kwargs exactly as Google's IFEval
defines them), the natural-language instruction sentences appended to the
policy prompt, and a generator of continuations that satisfy every
constraint by construction (`constrained_continuation(..., satisfy=True)`).

Instructions used, with their kwargs:

    keywords:existence               {"keywords": [w, ...]}       (1-2 words)
    punctuation:no_comma             {}
    change_case:english_lowercase    {}
    length_constraints:number_words  {"relation": "less than"|"at least",
                                      "num_words": int}
    length_constraints:number_sentences {"relation": ..., "num_sentences": int}
    startend:end_checker             {"end_phrase": str}
    detectable_format:title          {}
    keywords:forbidden_words         {"forbidden_words": [w, ...]} (1-2 words)
    detectable_content:postscript    {"postscript_marker": "P.S."}

Incompatible pairs are never sampled together (an end phrase and a
postscript both want the last line; sentence counts are left out next to a
postscript or a word count). Keywords are world object nouns; forbidden
words are common words of the world's prose with grammatical stand-ins.
Word/sentence bounds are drawn around typical continuation lengths, so an
unconstrained continuation passes them about half of the time.

Compliant answers start from a planned continuation and add what the
constraints need (keyword sentences, end phrase, `<<title>>` line,
postscript), swap forbidden words for stand-ins, drop commas, lowercase,
then drop the lowest-priority sentences or add fault-free ones until the
word/sentence bounds hold; they may exceed 8 sentences.

`check` re-implements IFEval's strict checks for these instructions (word
counts by `\\w+` runs, sentence ends at `.!?` followed by whitespace, as in
`rlcs_jax.verifiers`); `constrained_continuation` verifies its output with
it and raises `ValueError` if a constraint set cannot be met.
"""

from __future__ import annotations

import random
import re
from typing import Any, Mapping, Sequence

from rlcs_jax.data import storyworld
from rlcs_jax.data import storyworld_continuations as continuations
from rlcs_jax.data import storyworld_lexicon as lex
from rlcs_jax.data import storyworld_phrases as phr

INSTRUCTION_IDS: tuple[str, ...] = (
    "keywords:existence",
    "punctuation:no_comma",
    "change_case:english_lowercase",
    "length_constraints:number_words",
    "length_constraints:number_sentences",
    "startend:end_checker",
    "detectable_format:title",
    "keywords:forbidden_words",
    "detectable_content:postscript",
)
_CONFLICTS: tuple[frozenset[str], ...] = (
    frozenset({"startend:end_checker", "detectable_content:postscript"}),
    frozenset(
        {"length_constraints:number_sentences", "detectable_content:postscript"}
    ),
    frozenset(
        {
            "length_constraints:number_words",
            "length_constraints:number_sentences",
        }
    ),
)
# Probability of 0, 1, 2, 3 constraints.
_COUNT_WEIGHTS = (0.1, 0.35, 0.35, 0.2)
_MIN_BODY = 2  # Fewest story sentences kept when shortening.
_KEEP = 100  # Priority of sentences that shortening must not drop.
_FILLER_KINDS = ("trait", "emotion", "description", "neutral")

_WORD_RE = re.compile(r"\w+")
_SENTENCE_END_RE = re.compile(r"[.!?]+[\"'\u201d\u2019)]*(?=\s|$)")


def count_words(text: str) -> int:
  """IFEval's word count: runs of `\\w`."""
  return len(_WORD_RE.findall(text))


def count_sentences(text: str) -> int:
  """Sentences ending at `.!?` (plus closers) before whitespace or the end."""
  n, start = 0, 0
  for m in _SENTENCE_END_RE.finditer(text):
    if text[start : m.end()].strip():
      n += 1
    start = m.end()
  return n + (1 if text[start:].strip() else 0)


def _relation_ok(value: int, relation: str, bound: int) -> bool:
  return value < bound if relation == "less than" else value >= bound


def _check_one(text: str, iid: str, kw: Mapping[str, Any]) -> bool:
  """IFEval's strict check of one instruction."""
  if iid == "keywords:existence":
    return all(re.search(k, text, flags=re.IGNORECASE) for k in kw["keywords"])
  if iid == "punctuation:no_comma":
    return "," not in text
  if iid == "change_case:english_lowercase":
    return text.islower()
  if iid == "length_constraints:number_words":
    return _relation_ok(count_words(text), kw["relation"], kw["num_words"])
  if iid == "length_constraints:number_sentences":
    return _relation_ok(
        count_sentences(text), kw["relation"], kw["num_sentences"]
    )
  if iid == "startend:end_checker":
    return (
        text.strip()
        .strip('"')
        .lower()
        .endswith(kw["end_phrase"].strip().lower())
    )
  if iid == "detectable_format:title":
    return any(
        t.lstrip("<").rstrip(">").strip()
        for t in re.findall(r"<<[^\n]+>>", text)
    )
  if iid == "keywords:forbidden_words":
    return not any(
        re.search(r"\b" + w + r"\b", text, flags=re.IGNORECASE)
        for w in kw["forbidden_words"]
    )
  if iid == "detectable_content:postscript":
    return bool(
        re.findall(r"\s*p\.\s?s\..*$", text.lower(), flags=re.MULTILINE)
    )
  raise ValueError(f"unknown instruction id {iid!r}")


def check(
    text: str,
    instruction_ids: Sequence[str],
    kwargs: Sequence[Mapping[str, Any]],
) -> list[bool]:
  """Per-instruction pass/fail of `text` (IFEval strict semantics)."""
  return [_check_one(text, i, k) for i, k in zip(instruction_ids, kwargs)]


def _sample_kwargs(
    iid: str, context: Mapping[str, Any], rng: random.Random
) -> dict[str, Any]:
  if iid == "keywords:existence":
    own = list(context["objects"])
    others = [o for o in sorted(lex.OBJECTS) if o not in own]
    pool = own if rng.random() < 0.5 else others
    words = rng.sample(pool, min(len(pool), 1 if rng.random() < 0.6 else 2))
    return {"keywords": words}
  if iid == "length_constraints:number_words":
    relation = rng.choice(("less than", "at least"))
    return {"relation": relation, "num_words": rng.randrange(40, 95, 5)}
  if iid == "length_constraints:number_sentences":
    relation = rng.choice(("less than", "at least"))
    bound = rng.randint(5, 8) if relation == "less than" else rng.randint(4, 8)
    return {"relation": relation, "num_sentences": bound}
  if iid == "startend:end_checker":
    return {"end_phrase": rng.choice(phr.END_PHRASES)}
  if iid == "keywords:forbidden_words":
    words = rng.sample(
        sorted(phr.FORBIDDEN_SWAPS), 1 if rng.random() < 0.6 else 2
    )
    return {"forbidden_words": words}
  if iid == "detectable_content:postscript":
    return {"postscript_marker": "P.S."}
  return {}


def sample_constraints(
    context: Mapping[str, Any], rng: random.Random, num: int | None = None
) -> tuple[list[str], list[dict[str, Any]]]:
  """0-3 compatible instructions (ids, kwargs) for a story context."""
  if num is None:
    num = rng.choices(range(len(_COUNT_WEIGHTS)), _COUNT_WEIGHTS)[0]
  ids: list[str] = []
  for iid in rng.sample(INSTRUCTION_IDS, len(INSTRUCTION_IDS)):
    if len(ids) == num:
      break
    if any(frozenset({iid, other}) in _CONFLICTS for other in ids):
      continue
    ids.append(iid)
  return ids, [_sample_kwargs(i, context, rng) for i in ids]


def _quoted_list(words: Sequence[str], joiner: str) -> str:
  quoted = [f'"{w}"' for w in words]
  if len(quoted) == 1:
    return quoted[0]
  return ", ".join(quoted[:-1]) + f" {joiner} " + quoted[-1]


def describe(iid: str, kw: Mapping[str, Any]) -> str:
  """The natural-language instruction sentence for one constraint."""
  if iid == "keywords:existence":
    noun = "keyword" if len(kw["keywords"]) == 1 else "keywords"
    return (
        f"Include the {noun} {_quoted_list(kw['keywords'], 'and')} in "
        "your story."
    )
  if iid == "punctuation:no_comma":
    return "Do not use any commas in your response."
  if iid == "change_case:english_lowercase":
    return (
        "Write your entire response in English using only lowercase "
        "letters; no capital letters are allowed."
    )
  if iid == "length_constraints:number_words":
    return f"Answer with {kw['relation']} {kw['num_words']} words."
  if iid == "length_constraints:number_sentences":
    return (
        f"Your response should contain {kw['relation']} "
        f"{kw['num_sentences']} sentences."
    )
  if iid == "startend:end_checker":
    return (
        f'Finish your response with the exact phrase "{kw["end_phrase"]}" '
        "No other words should follow this phrase."
    )
  if iid == "detectable_format:title":
    return (
        "Give your story a title wrapped in double angular brackets, such "
        "as <<the hidden door>>."
    )
  if iid == "keywords:forbidden_words":
    noun = "word" if len(kw["forbidden_words"]) == 1 else "words"
    return (
        f"Do not use the {noun} "
        f"{_quoted_list(kw['forbidden_words'], 'or')} in your response."
    )
  if iid == "detectable_content:postscript":
    return (
        "At the end of your response, add a postscript starting with "
        f"{kw['postscript_marker']}"
    )
  raise ValueError(f"unknown instruction id {iid!r}")


def build_constraint_prompt(
    context: Mapping[str, Any],
    instruction_ids: Sequence[str],
    kwargs: Sequence[Mapping[str, Any]],
) -> str:
  """The policy prompt followed by the constraint sentences."""
  prompt = storyworld.build_policy_prompt(context)
  extra = " ".join(describe(i, k) for i, k in zip(instruction_ids, kwargs))
  return prompt + (" " + extra if extra else "")


def _swap_words(text: str, words: Sequence[str]) -> str:
  """Replaces forbidden words by their stand-ins, keeping capitals."""
  for word in words:
    swap = phr.FORBIDDEN_SWAPS[word]
    if not swap:  # Delete the word and the space after it.
      text = re.sub(
          r"\b" + re.escape(word) + r"\b ?", "", text, flags=re.IGNORECASE
      )
      continue
    text = re.sub(
        r"\b" + re.escape(word) + r"\b",
        lambda m, swap=swap: swap.capitalize()
        if m.group(0)[0].isupper()
        else swap,
        text,
        flags=re.IGNORECASE,
    )
  return text


class _Builder:
  """Assembles a compliant answer from planned sentences plus add-ons."""

  def __init__(self, context, ids, kwargs, levels, rng):
    self.ctx, self.rng = context, rng
    self.kw = dict(zip(ids, kwargs))
    self.levels = levels
    self.names = [c["name"] for c in context["characters"]]
    self.body = continuations.plan_continuation(context, levels, rng)
    self.add_keywords()

  def add_keywords(self) -> None:
    if "keywords:existence" not in self.kw:
      return
    words = self.kw["keywords:existence"]["keywords"]
    for word in words:
      if re.search(word, self.text(), flags=re.IGNORECASE):
        continue
      sentence = self.rng.choice(phr.KEYWORD_SENTENCES).format(
          N=self.rng.choice(self.names), T=lex.OBJECTS.get(word, word)
      )
      pos = self.rng.randint(1, len(self.body))
      self.body.insert(pos, {"kind": "keyword", "text": sentence, "prio": 0})
    for item in self.body:  # Sentences holding a keyword must stay.
      if any(re.search(w, item["text"], flags=re.IGNORECASE) for w in words):
        item["prio"] = _KEEP

  def text(self) -> str:
    return " ".join(item["text"] for item in self.body)

  def shrink(self) -> bool:
    """Drops the lowest-priority sentence; False if none may go."""
    droppable = [i for i, it in enumerate(self.body) if it["prio"] < _KEEP]
    if len(self.body) <= _MIN_BODY or not droppable:
      return False
    del self.body[min(droppable, key=lambda i: (self.body[i]["prio"], -i))]
    return True

  def grow(self) -> None:
    """Appends a sentence that carries no fault (from a fresh plan)."""
    have = {it["text"] for it in self.body}
    fresh = [
        it
        for it in continuations.plan_continuation(
            self.ctx, self.levels, self.rng
        )
        if it["kind"] in _FILLER_KINDS and it["text"] not in have
    ]
    if fresh:
      item = self.rng.choice(fresh)
    else:
      line = self.rng.choice(phr.NEUTRAL_LINES)
      item = {
          "kind": "neutral",
          "text": line.format(N=self.names[0], M=self.names[-1]),
          "prio": 1,
      }
    # A cut-off last sentence stays last.
    cut = bool(self.body) and self.body[-1]["kind"] == "cut_off"
    self.body.insert(len(self.body) - int(cut), item)

  def render(self) -> str:
    body = [item["text"] for item in self.body]
    if "startend:end_checker" in self.kw:
      # The end phrase would turn a cut-off fragment into a run-on.
      body = [it["text"] for it in self.body if it["kind"] != "cut_off"]
      body.append(self.kw["startend:end_checker"]["end_phrase"])
    text = " ".join(body)
    if "keywords:forbidden_words" in self.kw:
      text = _swap_words(
          text, self.kw["keywords:forbidden_words"]["forbidden_words"]
      )
    if "detectable_format:title" in self.kw:
      title = self.rng.choice(phr.TITLE_TEMPLATES).format(
          N=self.names[0],
          T=lex.OBJECTS.get(self.ctx["objects"][0], "secret").title(),
          L=lex.PLACES.get(self.ctx["setting"]["place"], "sea").title(),
      )
      text = f"<<{title}>>\n\n{text}"
    if "detectable_content:postscript" in self.kw:
      ps = self.rng.choice(phr.POSTSCRIPTS).format(
          N=self.names[0], T=lex.OBJECTS.get(self.ctx["objects"][0], "key")
      )
      text = f"{text}\n\n{ps}"
    if "punctuation:no_comma" in self.kw:
      text = text.replace(",", "")
    if "change_case:english_lowercase" in self.kw:
      text = text.lower()
    return text

  def length_error(self, text: str) -> int:
    """+1 if the text must shrink, -1 if it must grow, 0 if fine."""
    for iid, key, count in (
        ("length_constraints:number_words", "num_words", count_words),
        (
            "length_constraints:number_sentences",
            "num_sentences",
            count_sentences,
        ),
    ):
      if iid in self.kw:
        kw = self.kw[iid]
        if not _relation_ok(count(text), kw["relation"], kw[key]):
          return 1 if kw["relation"] == "less than" else -1
    return 0

  def build(self) -> str:
    for _ in range(40):
      text = self.render()
      error = self.length_error(text)
      if error == 0:
        return text
      if error > 0:
        if not self.shrink():
          break
      else:
        self.grow()
    raise ValueError("constraints cannot be satisfied for this context")


def constrained_continuation(
    context: Mapping[str, Any],
    instruction_ids: Sequence[str],
    kwargs: Sequence[Mapping[str, Any]],
    levels: Mapping[str, float],
    rng: random.Random,
    *,
    satisfy: bool,
) -> str:
  """A continuation; with `satisfy`, one that passes every constraint.

  Raises:
    ValueError: if `satisfy` and the constraints cannot be met.
  """
  if not satisfy:
    return continuations.continuation(context, levels, rng)
  text = _Builder(context, instruction_ids, kwargs, levels, rng).build()
  if not all(check(text, instruction_ids, kwargs)):
    raise ValueError(f"constraint construction failed: {instruction_ids}")
  return text
