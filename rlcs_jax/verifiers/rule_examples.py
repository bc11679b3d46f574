"""Positive and negative example responses for every rule in `rules.RULES`.

Owns `EXAMPLES`: `{instruction_id: (kwargs, [follows], [violates])}`. Each
string is judged on its own by the raw rule (`rules.RULES[id](s, **kwargs)`)
and, being non-blank, equally in strict scoring. The tests iterate this
table and require an entry for every rule, so adding a rule means adding
examples here. The negatives include the near misses that pin down IFEval's
exact semantics.
"""

from typing import Any

EXAMPLES: dict[str, tuple[dict[str, Any], list[str], list[str]]] = {
    "keywords:existence": (
        {"keywords": ["lantern", "harbor"]},
        [
            "The LANTERN swung over the harbor.",
            "Harbors and lanterns: substrings count, as in IFEval.",
        ],
        ["The lantern swung over the bay.", "Harbor lights."],
    ),
    "keywords:frequency": (
        {"keyword": "rain", "frequency": 3, "relation": "at least"},
        ["Rain, rain, and more RAIN.", "rain rainbow raincoat"],
        ["Rain, rain, go away.", "No weather today."],
    ),
    "keywords:forbidden_words": (
        {"forbidden_words": ["love", "heart"]},
        ["Lovely weather; hearty stew. Whole words only.", "Plain text."],
        ["I LOVE you.", "my heart, my home"],
    ),
    "keywords:letter_frequency": (
        {"letter": "z", "let_frequency": 3, "let_relation": "less than"},
        ["Lazy days.", "No such letter."],
        ["Zany zebras zigzag.", "zzz"],
    ),
    "language:response_language": (
        {"language": "es"},
        [
            "El viento sopla sobre el mar y las gaviotas vuelan muy alto.",
            "12345 !!!",
        ],
        [
            "The wind blows over the sea and the gulls fly high.",
            "Le vent souffle sur la mer et les mouettes volent très haut.",
        ],
    ),
    "length_constraints:number_sentences": (
        {"num_sentences": 3, "relation": "less than"},
        [
            "Mr. Smith arrived at 3.30 p.m. yesterday. He left early.",
            "One sentence only... with a pause.",
        ],
        ["One. Two. Three.", "Stop! Go? Wait."],
    ),
    "length_constraints:number_paragraphs": (
        {"num_paragraphs": 2},
        ["First part.\n***\nSecond part.", "***\nA\n***\nB\n***"],
        [
            "First.\n***\n***\nSecond.",
            "Only one paragraph.",
            "A\n\nB  (blank lines do not divide here)",
        ],
    ),
    "length_constraints:number_words": (
        {"num_words": 5, "relation": "less than"},
        ["Four words right here.", "Don't stop!"],
        ["Five words are right here.", "e-mail me at x.y"],
    ),
    "length_constraints:nth_paragraph_first_word": (
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
        [
            "Once upon a time.\n\nThen it ended.",
            'A start.\n\n"Then," she said.',
        ],
        [
            "Once upon a time.\n\nAnd then it ended.",
            "Once.\n\nThen.\n\nAgain.",
            "Once.\nThen it ended.",
        ],
    ),
    "detectable_content:number_placeholders": (
        {"num_placeholders": 2},
        ["Dear [name], see you at [place].", "[a][b]"],
        ["Dear [name], see you soon.", "[broken\n] and [one]"],
    ),
    "detectable_content:postscript": (
        {"postscript_marker": "P.S."},
        ["Love, Ann\n\nP.S. Bring snacks.", "love\np. s. bring snacks"],
        ["Love, Ann\nPS bring snacks", "P.P.S without the dot after s"],
    ),
    "detectable_format:number_bullet_lists": (
        {"num_bullets": 2},
        ["* one\n* two", "Intro\n  - one\n- two\n**bold** is not a bullet"],
        [
            "* one\n* two\n* three",
            "1. one\n2. two",
            "*one* is not spaced" " but still a bullet",
        ],
    ),
    "detectable_format:constrained_response": (
        {},
        ["My answer is yes.", "Hmm. My answer is maybe. Ask again."],
        ["Yes.", "my answer is no."],
    ),
    "detectable_format:number_highlighted_sections": (
        {"num_highlights": 2},
        ["*first* and *second*", "**bold one** and *italic two*"],
        ["*only one*", "* * blank highlights * *", "*not\nclosed*"],
    ),
    "detectable_format:multiple_sections": (
        {"section_spliter": "Section", "num_sections": 2},
        ["Section 1\nIntro\nSection 2\nBody", "Section 1 a Section 2 b"],
        ["Section 1\nIntro only", "SECTION 1 a SECTION 2 b (case matters)"],
    ),
    "detectable_format:json_format": (
        {},
        [
            '{"title": "Ode", "lines": 4}',
            '```json\n{"a": [1, 2]}\n```',
            "```\n[]\n```",
        ],
        [
            'Here is the JSON: {"a": 1}',
            "{'a': 1}",
            "[" * 100_000 + "]" * 100_000,
        ],
    ),
    "detectable_format:title": (
        {},
        ["<<Ode to Rain>>\nIt falls.", "text <<a>> more"],
        ["<< >>\nNo title.", "<<split\nacross lines>>", "<Single>"],
    ),
    "combination:two_responses": (
        {},
        ["A quiet poem.\n******\nA loud poem.", "******\nOne\n******\nTwo"],
        [
            "Same.\n******\nSame.",
            "One\n******\n\n******\nTwo",
            "Only one response.",
        ],
    ),
    "combination:repeat_prompt": (
        {"prompt_to_repeat": "Write a haiku about frogs."},
        [
            "write a haiku about frogs. Green leap, a splash.",
            "  Write a haiku about frogs.\nPond.",
        ],
        ["Sure! Write a haiku about frogs.", "Write a haiku about toads."],
    ),
    "startend:end_checker": (
        {"end_phrase": "The end."},
        ["And they lived happily. The End.", 'Done. the end."  '],
        ["The end. Or is it?", "The end"],
    ),
    "startend:quotation": (
        {},
        ['"A quoted tale."', '  "Line one.\nLine two."  '],
        ["“Curly quotes do not count.”", '"', "No quotes."],
    ),
    "change_case:capital_word_frequency": (
        {"capital_frequency": 2, "capital_relation": "at least"},
        ["WAKE UP now.", "I said DON'T.", "A WELL-KNOWN fact."],
        ["Wake UP now.", "no capitals", "123 456"],
    ),
    "change_case:english_capital": (
        {},
        ["THE SHIP SAILED AT DAWN AND THE CREW WAS HAPPY.", "HELLO WORLD 42"],
        [
            "The ship sailed at dawn.",
            "EL BARCO ZARPÓ AL AMANECER Y LA TRIPULACIÓN ESTABA FELIZ.",
        ],
    ),
    "change_case:english_lowercase": (
        {},
        [
            "the ship sailed at dawn and the crew was happy.",
            "<<a title>> is fine.",
        ],
        [
            "The ship sailed at dawn.",
            "el barco zarpó al amanecer y la tripulación estaba feliz.",
        ],
    ),
    "punctuation:no_comma": (
        {},
        ["No commas here.", "全角逗号，不算 (fullwidth comma is allowed)"],
        ["Well, hello.", ","],
    ),
}
