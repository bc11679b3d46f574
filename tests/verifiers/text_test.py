"""Tests for rlcs_jax.verifiers.text: sentence splitting and counters."""

import time

import pytest

from rlcs_jax.verifiers import text


@pytest.mark.parametrize(
    "passage, expected",
    [
        ("", []),
        ("   \n ", []),
        ("One sentence", ["One sentence"]),
        (
            "Hello world. How are you? Fine!",
            ["Hello world.", "How are you?", "Fine!"],
        ),
        # Titles and Latin abbreviations never end a sentence.
        (
            "Mr. Smith met Dr. Jones. They talked.",
            ["Mr. Smith met Dr. Jones.", "They talked."],
        ),
        (
            "Bring fruit, e.g. apples or pears. Thanks.",
            ["Bring fruit, e.g. apples or pears.", "Thanks."],
        ),
        (
            "Cats vs. dogs is old. Move on.",
            ["Cats vs. dogs is old.", "Move on."],
        ),
        # Decimals, times and acronyms.
        (
            "Pi is 3.14 roughly. It never ends.",
            ["Pi is 3.14 roughly.", "It never ends."],
        ),
        (
            "We met at 5 p.m. yesterday. It rained.",
            ["We met at 5 p.m. yesterday.", "It rained."],
        ),
        (
            "She moved to the U.S. last year. She likes it.",
            ["She moved to the U.S. last year.", "She likes it."],
        ),
        (
            "She moved to the U.S. Then she left.",
            ["She moved to the U.S.", "Then she left."],
        ),
        (
            "He bought apples, pears, etc. and left. Then he ate.",
            ["He bought apples, pears, etc. and left.", "Then he ate."],
        ),
        (
            "See No. 5 today. I said no. Then I left.",
            ["See No. 5 today.", "I said no.", "Then I left."],
        ),
        (
            "J. R. R. Tolkien wrote books. Many.",
            ["J. R. R. Tolkien wrote books.", "Many."],
        ),
        # Ellipses end a sentence only before a capital.
        (
            "Wait... what happened? Nothing...",
            ["Wait... what happened?", "Nothing..."],
        ),
        ("I waited… Then he came.", ["I waited…", "Then he came."]),
        ("So... we left. Bye.", ["So... we left.", "Bye."]),
        # Quotes: closing quotes stay with their sentence; dialogue attribution
        # in lowercase continues it.
        ('"Run!" she said. They ran.', ['"Run!" she said.', "They ran."]),
        (
            'He said, "It is late." Then he left.',
            ['He said, "It is late."', "Then he left."],
        ),
        ("“Is it?” he asked. “Yes.”", ["“Is it?” he asked.", "“Yes.”"]),
        ("(It was late.) We slept.", ["(It was late.)", "We slept."]),
        # Repeated marks, URLs, and line breaks that do not end sentences.
        ("What?! No way!!! Okay.", ["What?!", "No way!!!", "Okay."]),
        ("Visit example.com today. Bye.", ["Visit example.com today.", "Bye."]),
        (
            "Roses are red\nViolets are blue.",
            ["Roses are red\nViolets are blue."],
        ),
        # CJK full stops need no space.
        ("我很好。你呢？谢谢！", ["我很好。", "你呢？", "谢谢！"]),
    ],
)
def test_split_sentences(passage, expected):
  assert text.split_sentences(passage) == expected
  assert text.count_sentences(passage) == len(expected)


@pytest.mark.parametrize(
    "passage, expected",
    [
        ("", 0),
        ("Hello, world!", 2),
        ("don't stop-believing", 4),
        ("naïve café", 2),
        # Combining marks are not \w, so they split words, as in IFEval.
        ("cafe\u0301s ok", 3),
        ("बिल्ली है", 4),
        ("こんにちは 世界", 2),
        ("مرحبا بالعالم", 2),
        ("🎉🎉 party_time 42", 2),
    ],
)
def test_count_words(passage, expected):
  assert text.count_words(passage) == expected


def test_markdown_paragraphs_split_like_ifeval():
  assert text.split_markdown_paragraphs("a\n***\nb") == ["a", "b"]
  assert text.split_markdown_paragraphs("a *** b") == ["a", "b"]
  assert text.split_markdown_paragraphs("a\n****\nb") == ["a", "*\nb"]


def test_count_letter_is_case_insensitive():
  assert text.count_letter("Zebra zoo", "z") == 2
  assert text.count_letter("Zebra zoo", "Z") == 2


def test_capital_word_tokens():
  assert text.capital_word_tokens("DON'T go, WELL-KNOWN man!") == [
      "DON",
      "'T",
      "go",
      "WELL-KNOWN",
      "man",
  ]


@pytest.mark.parametrize(
    "passage",
    [
        "\n" * 200_000,
        "[" * 200_000,
        "<<" * 100_000,
        "!" * 199_999 + "x",
        "." * 200_000,
        "Mr. " * 50_000,
        " \n*" * 66_666,
        "word " * 40_000,
    ],
)
def test_counters_are_linear_on_pathological_text(passage):
  start = time.perf_counter()
  text.count_sentences(passage)
  text.count_bullet_lines(passage)
  text.count_placeholders(passage)
  text.has_title(passage)
  text.count_words(passage)
  text.capital_word_tokens(passage)
  assert time.perf_counter() - start < 2.0
