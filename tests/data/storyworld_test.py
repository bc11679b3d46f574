"""Tests for StoryWorld: lexicon, generator, analysis, constraints, splits."""

import json
import os
import random
import re
import time

import numpy as np
import pytest

from rlcs_jax.data import quality
from rlcs_jax.data import quality_matchers as matchers
from rlcs_jax.data import rater as rater_lib
from rlcs_jax.data import storyworld
from rlcs_jax.data import storyworld_constraints as constraints
from rlcs_jax.data import storyworld_continuations as continuations
from rlcs_jax.data import storyworld_lexicon as lex
from rlcs_jax.data import storyworld_phrases as phr
from rlcs_jax.data import storyworld_splits as splits
from rlcs_jax.genrm import verdict

DIMS = quality.DIMENSIONS
SMALL_SIZES = {
    "sft_train": 30,
    "sft_eval": 10,
    "pairs_train": 20,
    "pairs_eval": 10,
    "contexts_train": 10,
    "contexts_eval": 5,
    "constraints_train": 20,
    "constraints_eval": 5,
    "sft_constraints": 20,
}


def _flat(level):
  return {d: level for d in DIMS}


def _has(phrases, text):
  text = matchers.norm(text)
  return [
      p
      for p in phrases
      if re.search(r"\b" + re.escape(matchers.norm(p)) + r"\b", text)
  ]


# ---------------------------------------------------------------- lexicon


def test_lexicon_sizes():
  assert len(lex.NAMES) >= 30
  assert len(lex.TRAIT_ACTIONS) >= 20
  assert len(lex.PLACES) >= 30
  assert len(lex.OBJECTS) >= 40
  assert set(lex.TRAIT_ACTIONS) == set(lex.TRAIT_LINES) == set(lex.OPPOSITE)
  for trait in lex.TRAIT_ACTIONS:
    assert lex.OPPOSITE[lex.OPPOSITE[trait]] == trait
    assert lex.TRAIT_ACTIONS[lex.OPPOSITE[trait]]  # Inconsistent actions.
  for spec in lex.ACTIONS.values():
    for style in ("bland", "vivid"):
      assert spec[style]


def test_lexicon_keeps_dimensions_separable():
  """Each phrasing carries one dimension's signal and no other's."""
  emotion_words = [
      w
      for levels in lex.EMOTION_WORDS.values()
      for words in levels.values()
      for w in words
  ]
  emotion_words += list(lex.FLAT_WORDS)
  markers = list(phr.BLAND_MARKERS + phr.VIVID_MARKERS)
  forms = [f for spec in lex.ACTIONS.values() for f in spec["forms"]]
  trait_text = [p for ps in lex.TRAIT_ACTIONS.values() for p in ps]
  trait_text += [p for ps in lex.TRAIT_LINES.values() for p in ps]
  for phrase in trait_text:
    assert not _has(emotion_words + markers + forms, phrase), phrase
  for levels in list(phr.EMOTION_CLAUSES.values()):
    for clauses in levels.values():
      for clause in clauses:
        assert not _has(markers, clause), clause
  for clause in phr.FLAT_CLAUSES:
    assert not _has(markers, clause), clause
  for spec in lex.ACTIONS.values():
    for vp in spec["bland"]:
      assert _has(phr.BLAND_MARKERS, vp) and not _has(phr.VIVID_MARKERS, vp)
    for vp in spec["vivid"]:
      assert _has(phr.VIVID_MARKERS, vp) and not _has(phr.BLAND_MARKERS, vp)
  for time, styles in phr.DESCRIPTIONS.items():
    for text in styles["bland"]:
      assert _has(phr.BLAND_MARKERS, text) and not _has(phr.VIVID_MARKERS, text)
    for text in styles["vivid"]:
      assert _has(phr.VIVID_MARKERS, text)
    for text in styles["bland"] + styles["vivid"]:
      assert _has(lex.TIME_WORDS[time], text), text


# -------------------------------------------------------------- generator


def test_context_schema_and_prompt():
  rng = random.Random(0)
  for _ in range(50):
    ctx = storyworld.sample_context(rng)
    assert json.loads(json.dumps(ctx)) == ctx
    names = [c["name"] for c in ctx["characters"]]
    assert 2 <= len(names) <= 3 and len(set(names)) == len(names)
    assert 2 <= len(ctx["outline"]) <= 3
    for event in ctx["outline"]:
      assert event["actor"] in names
      assert event["mood"] in lex.EMOTIONS
    prompt = storyworld.build_policy_prompt(ctx)
    assert prompt.startswith("Characters: ")
    assert prompt.endswith("\nContinue the story.")
    assert "\nOutline: 1. " in prompt and "\nStory so far: " in prompt
    assert len(prompt.split()) <= 110


def test_generator_is_deterministic():
  def sample(seed):
    rng = random.Random(seed)
    ctx = storyworld.sample_context(rng)
    return ctx, continuations.continuation(
        ctx, continuations.sample_levels(rng), rng
    )

  assert sample(3) == sample(3)
  assert sample(3) != sample(4)


@pytest.mark.parametrize("level", [0.0, 0.5, 1.0])
def test_continuation_lengths(level):
  rng = random.Random(1)
  for _ in range(60):
    ctx = storyworld.sample_context(rng)
    sentences = continuations.continuation_sentences(ctx, _flat(level), rng)
    assert 3 <= len(sentences) <= 8
    assert len(" ".join(sentences).split()) <= continuations.MAX_WORDS


# --------------------------------------------------------------- analysis


def _spearman(x, y):
  rx = np.argsort(np.argsort(x)).astype(float)
  ry = np.argsort(np.argsort(y)).astype(float)
  return float(np.corrcoef(rx, ry)[0, 1])


def test_analyze_recovers_latent_levels():
  rng = random.Random(7)
  levels, scores = [], []
  for _ in range(300):
    ctx = storyworld.sample_context(rng)
    lv = {d: rng.random() for d in DIMS}
    text = continuations.continuation(ctx, lv, rng)
    sc = quality.analyze(ctx, text)
    levels.append([lv[d] for d in DIMS])
    scores.append([sc[d] for d in DIMS])
  levels, scores = np.array(levels), np.array(scores)
  for j, d in enumerate(DIMS):
    pearson = float(np.corrcoef(levels[:, j], scores[:, j])[0, 1])
    spearman = _spearman(levels[:, j], scores[:, j])
    assert pearson >= 0.7 and spearman >= 0.7, (d, pearson, spearman)


def test_good_continuation_beats_bad_one():
  rng = random.Random(2)
  wins = 0
  for _ in range(40):
    ctx = storyworld.sample_context(rng)
    good = quality.analyze(ctx, continuations.continuation(ctx, _flat(1), rng))
    bad = quality.analyze(ctx, continuations.continuation(ctx, _flat(0), rng))
    assert min(good.values()) >= 0.5
    wins += sum(good[d] > bad[d] for d in DIMS)
  assert wins >= 0.95 * 40 * len(DIMS)


def test_analyze_evidence_names_the_fault():
  rng = random.Random(5)
  ctx = storyworld.sample_context(rng)
  first = ctx["outline"][0]
  stranger = next(
      n for n in lex.NAMES if n not in [c["name"] for c in ctx["characters"]]
  )
  text = (
      f"{stranger} waved from across the room. "
      f"{first['actor']} drew a breath and"
  )
  a = quality.analyze_detailed(ctx, text)
  assert a.wrong_names == (stranger.lower(),)
  assert a.cut_off
  assert a.event_credit[0] == 0.0
  assert a.scores["coherence"] < 0.5


ROBUSTNESS_CASES = {
    "empty": "",
    "whitespace": " \n\t \r\n ",
    "garbage": "asdf qwer zxcv uiop. lkjh mnbv poiu!",
    "punctuation": "!!!???...,,,;;;",
    "unicode": "日本語のテキスト。 Ünïcødé ☃☃☃ \x00 \ud800 ?? \u202e",
    "huge": "Mira found the key. " * 20000,
    "one_word": "x",
    "brackets": "Verdict: [[1]] <<title>> P.S. p.s.",
    "repeated": "Mira smiled. " * 12,
}


@pytest.mark.parametrize("name", sorted(ROBUSTNESS_CASES))
def test_analyze_is_robust_and_low_on_bad_text(name):
  ctx = storyworld.sample_context(random.Random(9))
  scores = quality.analyze(ctx, ROBUSTNESS_CASES[name])
  assert set(scores) == set(DIMS)
  assert all(0.0 <= v <= 1.0 for v in scores.values())
  assert sum(scores.values()) / len(scores) < 0.3, scores


def test_analyze_never_raises_on_bad_inputs():
  ctx = storyworld.sample_context(random.Random(9))
  good = continuations.continuation(ctx, _flat(1), random.Random(0))
  for context, text in [
      (None, good),
      ({"characters": 5}, good),
      ({"outline": [{"action": "find"}]}, good),
      (ctx, None),
      (ctx, 123),
      ([], b"bytes"),
  ]:
    scores = quality.analyze(context, text)
    assert all(0.0 <= v <= 1.0 for v in scores.values())


def test_off_topic_and_copied_text_score_lower():
  rng = random.Random(11)
  judge = rater_lib.Rater(0)
  for _ in range(10):
    ctx, other = storyworld.sample_context(rng), storyworld.sample_context(rng)
    own = judge.expected_score(
        ctx, continuations.continuation(ctx, _flat(0.5), rng)
    )
    off = judge.expected_score(
        ctx, continuations.continuation(other, _flat(1), rng)
    )
    copied = " ".join(e["text"] for e in ctx["outline"])
    assert off < own
    assert judge.expected_score(ctx, copied) < own
    outline = quality.analyze(ctx, copied)
    assert outline["originality"] == 0.0
    assert outline["coherence"] < 0.5


def test_lowercase_comma_free_text_scores_the_same():
  rng = random.Random(12)
  for _ in range(20):
    ctx = storyworld.sample_context(rng)
    text = continuations.continuation(
        ctx, continuations.sample_levels(rng), rng
    )
    plain = text.lower().replace(",", "")
    assert quality.analyze(ctx, plain) == quality.analyze(ctx, text)


# ------------------------------------------------------------ constraints


def test_constraint_checks_follow_ifeval():
  check = constraints._check_one
  assert check(
      "A lantern glowed.", "keywords:existence", {"keywords": ["LANTERN"]}
  )
  assert not check("a b, c", "punctuation:no_comma", {})
  assert check("all lower <<t>>", "change_case:english_lowercase", {})
  assert not check("Not lower", "change_case:english_lowercase", {})
  assert check(
      "one two three",
      "length_constraints:number_words",
      {"relation": "less than", "num_words": 4},
  )
  assert not check(
      "Mira's key",
      "length_constraints:number_words",
      {"relation": "less than", "num_words": 3},
  )
  assert check(
      'One. "Two," she said. Three!',
      "length_constraints:number_sentences",
      {"relation": "at least", "num_sentences": 3},
  )
  assert check(
      ' "The end."\n', "startend:end_checker", {"end_phrase": "the END."}
  )
  assert not check(
      "The end. P.S. no", "startend:end_checker", {"end_phrase": "The end."}
  )
  assert check("<<A Title>>\nText", "detectable_format:title", {})
  assert not check("<< >>\nText", "detectable_format:title", {})
  assert not check(
      "She said so.", "keywords:forbidden_words", {"forbidden_words": ["said"]}
  )
  assert check(
      "Unsaid.", "keywords:forbidden_words", {"forbidden_words": ["said"]}
  )
  assert check(
      "Story.\n\np.s. more",
      "detectable_content:postscript",
      {"postscript_marker": "P.S."},
  )


def test_constrained_continuation_satisfies_by_construction():
  rng = random.Random(4)
  seen = set()
  for _ in range(150):
    ctx = storyworld.sample_context(rng)
    ids, kwargs = constraints.sample_constraints(ctx, rng)
    assert len(ids) == len(set(ids)) <= 3
    seen.update(ids)
    try:
      text = constraints.constrained_continuation(
          ctx, ids, kwargs, continuations.sample_levels(rng), rng, satisfy=True
      )
    except ValueError:
      continue  # The splits resample such constraint sets.
    assert all(constraints.check(text, ids, kwargs)), (ids, kwargs, text)
    prompt = constraints.build_constraint_prompt(ctx, ids, kwargs)
    assert prompt.startswith(storyworld.build_policy_prompt(ctx))
  assert seen == set(constraints.INSTRUCTION_IDS)


# ----------------------------------------------------------------- splits


REQUIRED = {
    "sft": {"id", "context", "prompt", "response"},
    "pairs": {
        "id",
        "context",
        "prompt",
        "response_1",
        "response_2",
        "label",
        "teacher_12",
        "teacher_21",
    },
    "contexts": {"id", "context", "prompt", "reference"},
    "constraints": {
        "id",
        "context",
        "key",
        "prompt",
        "instruction_id_list",
        "kwargs",
    },
}


def _read(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
  out = tmp_path_factory.mktemp("storyworld")
  a = splits.write_storyworld(str(out / "a"), seed=0, sizes=SMALL_SIZES)
  b = splits.write_storyworld(str(out / "b"), seed=0, sizes=SMALL_SIZES)
  c = splits.write_storyworld(str(out / "c"), seed=1, sizes=SMALL_SIZES)
  return a, b, c


def test_splits_are_deterministic(written):
  a, b, c = written
  assert set(a) == set(splits.DEFAULT_SIZES)
  for split in a:
    with open(a[split], "rb") as fa, open(b[split], "rb") as fb:
      assert fa.read() == fb.read(), split
    with open(a[split], "rb") as fa, open(c[split], "rb") as fc:
      assert fa.read() != fc.read(), split
  assert not [
      f
      for f in os.listdir(os.path.dirname(a["sft_train"]))
      if f.startswith(".tmp")
  ]


def test_split_sizes_and_schemas(written):
  a, _, _ = written
  ids = set()
  for split, path in a.items():
    records = _read(path)
    assert len(records) == SMALL_SIZES[split]
    kind = "constraints" if "constraints" in split else split.split("_")[0]
    for r in records:
      assert REQUIRED[kind] <= set(r), split
      assert r["prompt"] and isinstance(r["context"], dict)
      ids.add(r["id"])
    if kind == "pairs":
      for r in records:
        assert r["label"] in (1, 2) and r["response_1"] != r["response_2"]
        for key in ("teacher_12", "teacher_21"):
          assert verdict.parse_verdict(r[key]).ok
    if kind == "constraints":
      assert sorted(r["key"] for r in records) == list(range(len(records)))
      for r in records:
        assert len(r["kwargs"]) == len(r["instruction_id_list"]) <= 3
        if split == "sft_constraints":
          assert r["compliant"] == all(
              constraints.check(
                  r["response"], r["instruction_id_list"], r["kwargs"]
              )
          )
  assert len(ids) == sum(SMALL_SIZES.values())


def test_no_context_shared_between_train_and_eval(written):
  a, _, _ = written
  keys = {}
  for split, path in a.items():
    keys[split] = {storyworld.context_key(r["context"]) for r in _read(path)}
  train = set().union(*(v for k, v in keys.items() if "eval" not in k))
  for split, value in keys.items():
    if "eval" in split:
      assert not value & train, split


def test_unknown_split_size_is_rejected(tmp_path):
  with pytest.raises(ValueError):
    splits.write_storyworld(str(tmp_path), seed=0, sizes={"sft_tain": 3})


@pytest.mark.slow
def test_default_sizes_write_quickly(tmp_path):
  start = time.perf_counter()
  paths = splits.write_storyworld(str(tmp_path), seed=0)
  elapsed = time.perf_counter() - start
  for split, path in paths.items():
    with open(path, encoding="utf-8") as f:
      assert sum(1 for _ in f) == splits.DEFAULT_SIZES[split]
  assert elapsed < 30.0, elapsed
