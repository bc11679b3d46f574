"""Strict parsing of a GenRM response's verdict.

Owns the rule that decides what a judge said. Only the response's final
non-empty line counts; it must be exactly `Verdict: [[1]]` or
`Verdict: [[2]]`, with nothing around it but whitespace. Verdict-like text
anywhere else (for example quoted story text inside the analysis) is
ignored, and a response that does not end in a valid verdict line is a
*format failure*, never a guess.

Lines are split on `\\n`, `\\r\\n` and `\\r`; "whitespace" is anything
`str.isspace` accepts (including Unicode spaces).
"""

from __future__ import annotations

import dataclasses
import re

OK = "ok"
FORMAT_FAILURE = "format_failure"
VERDICT_OPEN = "Verdict: [["

_VALID = re.compile(r"Verdict: \[\[([12])\]\]")
# Every repeat is bounded so that a scan is linear in the text: an unbounded
# `[^\]]*` let each "verdict" in a long adversarial string rescan the rest
# of it (quadratic time).
_ANY_VERDICT = re.compile(
    r"verdict\s{0,16}:?\s{0,16}\[\[([^\]]{0,32})\]\]", re.IGNORECASE
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclasses.dataclass(frozen=True)
class Verdict:
  """A parsed judgement."""

  status: str  # "ok" | "format_failure"
  choice: int | None  # 1 or 2 when status is "ok".
  reason: str  # Why parsing failed ("" when ok).

  @property
  def ok(self) -> bool:
    return self.status == OK


def _failure(reason: str) -> Verdict:
  return Verdict(status=FORMAT_FAILURE, choice=None, reason=reason)


def _last_line(response: str) -> tuple[str, int] | None:
  """The final non-empty line (stripped) and its start offset."""
  lines = []
  pos = 0
  for m in _LINE_BREAK.finditer(response):
    lines.append((response[pos : m.start()], pos))
    pos = m.end()
  lines.append((response[pos:], pos))
  for line, start in reversed(lines):
    if line.strip():
      return line.strip(), start
  return None


def parse_verdict(response: str) -> Verdict:
  """Parses the final-line verdict of a GenRM response."""
  if not isinstance(response, str):
    return _failure("response is not a string")
  last = _last_line(response)
  if last is None:
    return _failure("empty response")
  line, _ = last
  m = _VALID.fullmatch(line)
  if m:
    return Verdict(status=OK, choice=int(m.group(1)), reason="")
  found = [choice.strip() for choice in _ANY_VERDICT.findall(line)]
  if len(found) > 1:
    return _failure("more than one verdict on the final line")
  if found:
    if found[0] not in ("1", "2"):
      return _failure(f"verdict choice must be 1 or 2, got {found[0]!r}")
    return _failure(
        "final line is not exactly 'Verdict: [[1]]' or " "'Verdict: [[2]]'"
    )
  if _ANY_VERDICT.search(response):
    return _failure("verdict is not on the final line")
  return _failure("no verdict line")


def verdict_prefix(response: str) -> str | None:
  """The response up to and including the final `Verdict: [[`.

  Used to teacher-force a response and read the logits of the verdict
  token that follows. Returns None unless the final non-empty line starts
  (after whitespace) with `Verdict: [[`.
  """
  if not isinstance(response, str):
    return None
  last = _last_line(response)
  if last is None:
    return None
  line, start = last
  if not line.startswith(VERDICT_OPEN):
    return None
  offset = response.index(VERDICT_OPEN, start)
  return response[: offset + len(VERDICT_OPEN)]
