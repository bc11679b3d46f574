"""GenRM judge prompt: the text a generative reward model reads.

Owns the judge prompt template (`PROMPT_VERSION`) and the sanitisation of
untrusted text placed inside it. The prompt lists the five RLCS dimensions,
shows the story context and the two candidate continuations between
delimiter lines (`[Story]`, `[Continuation 1]`, `[Continuation 2]`, and
`[Judgement]` after which the response starts), and states the required
output format: one short line per dimension, then a final line
`Verdict: [[1]]` or `Verdict: [[2]]`.

Sanitisation (`sanitize`), applied to the context and both candidates so
that their text cannot imitate the prompt's structure or a verdict:

1. Line endings are normalised: `\\r\\n` and `\\r` become `\\n`.
2. Square brackets become round ones: `[` -> `(`, `]` -> `)`. This removes
   every `[[`/`]]` (so no `[[1]]` verdict token can appear) and every
   imitation of the `[Continuation 2]` / `[Judgement]` delimiter lines.
   StoryWorld text never contains brackets.
3. A line whose first non-blank word starts with `verdict` (any case)
   gets `> ` inserted before that word, so it reads as quoted text.
4. Leading and trailing blank space of the whole text is stripped.

Nothing else changes; in particular sanitising StoryWorld text is the
identity, so what the judge reads is exactly what the policy wrote.
"""

from __future__ import annotations

import re

PROMPT_VERSION = "genrm-v1"

DIMENSION_NAMES: tuple[str, ...] = (
    "coherence",
    "originality",
    "emotional engagement",
    "outline adherence",
    "character consistency",
)

_VERDICT_LINE = re.compile(
    r"^([ \t]*)(?=verdict)", re.IGNORECASE | re.MULTILINE
)
_BRACKETS = str.maketrans({"[": "(", "]": ")"})

_TEMPLATE = """\
Compare the two continuations of the story on coherence, originality, \
emotional engagement, outline adherence and character consistency, one \
short line each. End with the line "Verdict: [[1]]" or "Verdict: [[2]]".
[Story]
{context}
[Continuation 1]
{continuation_1}
[Continuation 2]
{continuation_2}
[Judgement]
"""


def sanitize(text: str) -> str:
  """Neutralises structure-like text (see the module docstring)."""
  text = text.replace("\r\n", "\n").replace("\r", "\n")
  text = text.translate(_BRACKETS)
  text = _VERDICT_LINE.sub(r"\1> ", text)
  return text.strip()


def build_judge_prompt(
    context_prompt: str, continuation_1: str, continuation_2: str
) -> str:
  """The GenRM input for one ordered pair of continuations."""
  return _TEMPLATE.format(
      context=sanitize(context_prompt),
      continuation_1=sanitize(continuation_1),
      continuation_2=sanitize(continuation_2),
  )
