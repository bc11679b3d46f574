"""The hidden rater: StoryWorld's stand-in for human annotators.

Owns the "human" judgement of story quality. A `Rater` weighs the five
`quality.analyze` dimensions with its own weights (drawn around
`BASE_WEIGHTS` from its seed) and adds Gaussian noise to every score it
gives, so its pairwise labels disagree with its own noise-free ranking on
a fraction of pairs: the best agreement any judge can reach with these
labels (the *ceiling*) is well below 100%. `DEFAULT_NOISE` puts the
ceiling near 85% on StoryWorld preference pairs
(`storyworld_continuations.sample_pair_levels`); `ceiling_agreement`
measures it.

Training code must never import this module: only `storyworld_splits.py`
(which writes the rater's labels into the data) and evaluation (which uses
the rater as the human judge of policy samples) do.

Ceiling procedure: for held-out pairs (context, text_a, text_b), compare
the noise-free preference `expected_score(a) > expected_score(b)` with one
noisy `label_pair` draw per pair; the fraction that agree is the ceiling.
"""

from __future__ import annotations

import random
from typing import Any, Iterable, Mapping

import numpy as np

from rlcs_jax.data import quality

BASE_WEIGHTS: dict[str, float] = {
    "coherence": 0.25,
    "originality": 0.15,
    "emotional_engagement": 0.20,
    "outline_adherence": 0.25,
    "character_consistency": 0.15,
}
DEFAULT_NOISE = 0.12  # Std of the per-score Gaussian noise.
_WEIGHT_CONCENTRATION = 100.0  # Dirichlet concentration around BASE_WEIGHTS.


class Rater:
  """A noisy human-like judge with rater-specific dimension weights."""

  def __init__(self, seed: int = 0, noise: float = DEFAULT_NOISE):
    gen = np.random.default_rng([seed, 0x5EED])
    alpha = _WEIGHT_CONCENTRATION * np.array(
        [BASE_WEIGHTS[d] for d in quality.DIMENSIONS]
    )
    self.weights: dict[str, float] = {
        d: float(w) for d, w in zip(quality.DIMENSIONS, gen.dirichlet(alpha))
    }
    self.noise = float(noise)
    self._rng = random.Random(seed)

  def combine(self, scores: Mapping[str, float]) -> float:
    """The noise-free score of precomputed `quality.analyze` scores."""
    return float(sum(self.weights[d] * scores[d] for d in quality.DIMENSIONS))

  def expected_score(self, context: Mapping[str, Any], text: str) -> float:
    """The noise-free score in [0, 1]."""
    return self.combine(quality.analyze(context, text))

  def score(
      self,
      context: Mapping[str, Any],
      text: str,
      rng: random.Random | None = None,
  ) -> float:
    """One noisy rating (uses the rater's own stream if `rng` is None)."""
    rng = self._rng if rng is None else rng
    return self.expected_score(context, text) + rng.gauss(0.0, self.noise)

  def label_pair(
      self,
      context: Mapping[str, Any],
      text_a: str,
      text_b: str,
      rng: random.Random,
  ) -> int:
    """Noisy preference: 1 if `text_a` is rated higher, else 2."""
    return self.label_scores(
        quality.analyze(context, text_a), quality.analyze(context, text_b), rng
    )

  def label_scores(
      self,
      scores_a: Mapping[str, float],
      scores_b: Mapping[str, float],
      rng: random.Random,
  ) -> int:
    """`label_pair` from precomputed `quality.analyze` scores."""
    a = self.combine(scores_a) + rng.gauss(0.0, self.noise)
    b = self.combine(scores_b) + rng.gauss(0.0, self.noise)
    if a == b:
      return rng.choice((1, 2))
    return 1 if a > b else 2

  def preferred(
      self, context: Mapping[str, Any], text_a: str, text_b: str
  ) -> int:
    """Noise-free preference (1 or 2; ties go to 1)."""
    a = self.expected_score(context, text_a)
    b = self.expected_score(context, text_b)
    return 1 if a >= b else 2


def ceiling_agreement(
    rater: Rater,
    pairs: Iterable[tuple[Mapping[str, Any], str, str]],
    rng: random.Random,
) -> float:
  """Agreement of the rater's noise-free ranking with its noisy labels."""
  agree = total = 0
  for context, text_a, text_b in pairs:
    label = rater.label_pair(context, text_a, text_b, rng)
    agree += int(label == rater.preferred(context, text_a, text_b))
    total += 1
  return agree / total if total else float("nan")
