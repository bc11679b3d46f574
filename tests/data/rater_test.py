"""Tests for the hidden rater and the teacher."""

import random

import pytest

from rlcs_jax.data import quality
from rlcs_jax.data import rater as rater_lib
from rlcs_jax.data import storyworld
from rlcs_jax.data import storyworld_continuations as continuations
from rlcs_jax.data import teacher as teacher_lib
from rlcs_jax.genrm import verdict


@pytest.fixture(scope="module")
def pairs():
  rng = random.Random(21)
  out = []
  for _ in range(300):
    ctx = storyworld.sample_context(rng)
    levels_a, levels_b = continuations.sample_pair_levels(rng)
    out.append(
        (
            ctx,
            continuations.continuation(ctx, levels_a, rng),
            continuations.continuation(ctx, levels_b, rng),
        )
    )
  return out


def test_rater_weights_are_seeded():
  a, b = rater_lib.Rater(0), rater_lib.Rater(1)
  assert a.weights == rater_lib.Rater(0).weights
  assert a.weights != b.weights
  assert abs(sum(a.weights.values()) - 1.0) < 1e-9


def test_rater_scores(pairs):
  rater = rater_lib.Rater(0)
  ctx, text_a, text_b = pairs[0]
  expected = rater.expected_score(ctx, text_a)
  assert 0.0 <= expected <= 1.0
  assert expected == rater.combine(quality.analyze(ctx, text_a))
  noisy = [rater.score(ctx, text_a, random.Random(i)) for i in range(50)]
  assert len(set(noisy)) > 1
  assert abs(sum(noisy) / len(noisy) - expected) < 0.1
  assert rater.label_pair(ctx, text_a, text_b, random.Random(0)) in (1, 2)
  assert rater.expected_score(ctx, "") == 0.0


def test_rater_ceiling_is_well_below_perfect(pairs):
  ceiling = rater_lib.ceiling_agreement(
      rater_lib.Rater(0), pairs, random.Random(0)
  )
  assert 0.75 <= ceiling <= 0.93, ceiling


def _story_choice(verdict_position, first_is_a):
  return verdict_position if first_is_a else 3 - verdict_position


def test_teacher_position_bias_flips_some_pairs(pairs):
  teacher = teacher_lib.Teacher(0)
  rng = random.Random(1)
  flips = 0
  for ctx, a, b in pairs:
    _, v_ab = teacher.judge(ctx, a, b, rng)
    _, v_ba = teacher.judge(ctx, b, a, rng)
    flips += _story_choice(v_ab, True) != _story_choice(v_ba, False)
  rate = flips / len(pairs)
  assert 0.05 <= rate <= 0.30, rate


def test_teacher_favours_the_first_position_on_equal_texts(pairs):
  teacher = teacher_lib.Teacher(0)
  rng = random.Random(2)
  firsts = sum(teacher.judge(ctx, a, a, rng)[1] == 1 for ctx, a, _ in pairs)
  assert firsts > 0.9 * len(pairs)


def test_teacher_chain_format(pairs):
  teacher = teacher_lib.Teacher(0)
  rng = random.Random(3)
  for ctx, a, b in pairs[:100]:
    chain, choice = teacher.judge(ctx, a, b, rng)
    lines = chain.split("\n")
    assert len(lines) == 6
    labels = [line.split(":")[0] for line in lines[:5]]
    assert labels == [teacher_lib.LABELS[d] for d in quality.DIMENSIONS]
    assert lines[-1] == f"Verdict: [[{choice}]]"
    assert verdict.parse_verdict(chain) == verdict.Verdict("ok", choice, "")
    assert len(chain.split()) <= teacher_lib.MAX_WORDS


def test_teacher_cites_concrete_evidence():
  rng = random.Random(4)
  ctx = storyworld.sample_context(rng)
  good = continuations.continuation(
      ctx, {d: 1.0 for d in quality.DIMENSIONS}, rng
  )
  skipped = ctx["outline"][-1]["text"].rstrip(".")
  bad = " ".join(e["text"] for e in ctx["outline"][:-1])
  chain, choice = teacher_lib.Teacher(0).judge(ctx, bad, good, rng)
  assert choice == 2
  assert f"Continuation 1 skips '{skipped}'" in chain
  assert "present tense" in chain or "repeats" in chain
