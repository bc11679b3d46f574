"""StoryWorld phrasing: sentence templates and wording-quality markers.

Owns how StoryWorld text is written, as tables: emotion clauses, speech
tags, transitions, place descriptions by time of day, the sentences the
generator uses to break coherence on purpose, story openers, the
constraint add-ons (end phrases, keyword sentences, postscripts, titles,
forbidden-word stand-ins) and the bland/vivid markers that the originality
analysis counts. Entities (names, places, objects, actions, emotion words)
live in `storyworld_lexicon.py`. Pure data: no logic, no randomness.

Conventions. `{N}`/`{M}` are character names, `{X}`/`{O}`/`{P}` the
subject, object and possessive (a name or a pronoun), `{T}` an object or
place phrase, `{L}` a place phrase. Each bland template contains a
`BLAND_MARKERS` phrase and each vivid one a `VIVID_MARKERS` phrase; emotion
clauses contain neither (tests check these invariants). Long flat tables
are kept compact with `# fmt: off`.
"""

# Emotion clauses. `{X}` is the subject (name or pronoun), `{P}` possessive.
EMOTION_CLAUSES: dict[str, dict[str, tuple[str, ...]]] = {
    "joy": {
        "strong": (
            "{P} heart leapt with delight",
            "{X} beamed with elation",
            "a wave of pure joy swept over {O}",
        ),
        "mild": ("{X} smiled", "{X} felt glad", "{X} was pleased"),
    },
    "fear": {
        "strong": (
            "{P} heart pounded with dread",
            "{X} trembled in terror",
            "cold dread gripped {O}",
        ),
        "mild": (
            "{X} felt uneasy",
            "{X} grew a little nervous",
            "{X} was worried",
        ),
    },
    "anger": {
        "strong": (
            "{X} seethed with fury",
            "rage burned in {P} eyes",
            "{X} was furious",
        ),
        "mild": ("{X} frowned", "{X} felt annoyed", "{X} was irritated"),
    },
    "sadness": {
        "strong": (
            "{X} wept with grief",
            "despair settled over {O}",
            "{X} sobbed quietly",
        ),
        "mild": ("{X} felt sad", "{X} sighed", "{X} grew downcast"),
    },
    "surprise": {
        "strong": (
            "{X} gasped in disbelief",
            "{X} stood stunned",
            "{X} was astonished",
        ),
        "mild": ("{X} blinked", "{X} felt surprised", "{X} seemed puzzled"),
    },
    "relief": {
        "strong": (
            "relief flooded through {O}",
            "{X} sagged with relief",
            "{X} was deeply thankful",
        ),
        "mild": (
            "{X} relaxed a little",
            "{X} felt calmer",
            "{P} shoulders eased",
        ),
    },
}
FLAT_CLAUSES: tuple[str, ...] = (
    "{X} shrugged",
    "{X} felt nothing much",
    "{X} did not care either way",
    "{X} felt fine about it",
    "{X} thought it was okay",
)

# Phrasing quality markers (counted by the originality analysis).
# fmt: off
BLAND_MARKERS: tuple[str, ...] = (
    "found", "lost", "opened", "hid", "gave", "took", "fixed", "went", "got",
    "looked around", "met", "argued", "helped", "followed", "told", "read",
    "said", "then", "after that", "next", "very", "nice", "big", "stuff",
    "things",
)
# fmt: on
# fmt: off
VIVID_MARKERS: tuple[str, ...] = (
    "discovered", "unearthed", "stumbled upon", "misplaced", "mislaid",
    "pried open", "unsealed", "unlatched", "tucked away", "concealed",
    "buried", "handed", "pressed", "entrusted", "snatched", "pocketed",
    "swiped", "mended", "patched up", "restored", "pored over", "studied",
    "deciphered", "hurried", "trudged", "set off", "fled", "slipped out",
    "broke out", "combed", "scoured", "ransacked", "ran into", "crossed paths",
    "face to face", "quarreled", "clashed", "snapped at", "assisted",
    "lent a hand", "aided", "trailed", "shadowed", "tracked", "confessed",
    "revealed", "whispered", "murmured", "muttered", "declared", "called out",
    "moments later", "before long", "as the wind rose",
    "in the hush that followed", "without warning", "spilled", "glittered",
    "gilded", "curled", "hammered", "pooled", "bled", "shimmered", "drifted",
    "wrapped", "blazed",
)
# fmt: on

SPEECH_TAGS: dict[str, tuple[str, ...]] = {
    "bland": ("said",),
    "vivid": ("whispered", "murmured", "muttered", "declared", "called out"),
}
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "bland": ("Then,", "After that,", "Next,"),
    "vivid": (
        "Moments later,",
        "Before long,",
        "As the wind rose,",
        "In the hush that followed,",
        "Without warning,",
    ),
}

# Place descriptions by time of day ({T} is the place phrase).
DESCRIPTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "dawn": {
        "bland": (
            "It was dawn, and the {T} was very quiet.",
            "The dawn was nice and still at the {T}.",
        ),
        "vivid": (
            "The first light of dawn gilded the roof of the {T}.",
            "Sunrise spilled pink and gold across the {T}.",
        ),
    },
    "morning": {
        "bland": (
            "It was morning, and the {T} was very bright.",
            "The morning was nice at the {T}.",
        ),
        "vivid": (
            "Morning mist curled around the {T}.",
            "The morning air shimmered over the {T}.",
        ),
    },
    "noon": {
        "bland": (
            "It was noon, and the {T} was very hot.",
            "The noon sun was big over the {T}.",
        ),
        "vivid": (
            "The midday sun hammered down on the {T}.",
            "At noon the heat shimmered above the {T}.",
        ),
    },
    "dusk": {
        "bland": (
            "It was dusk, and the {T} was very gray.",
            "The sunset was nice over the {T}.",
        ),
        "vivid": (
            "Twilight pooled in the corners of the {T}.",
            "The sunset bled orange across the {T}.",
        ),
    },
    "night": {
        "bland": (
            "It was night, and the {T} was very dark.",
            "The night was very cold at the {T}.",
        ),
        "vivid": (
            "Moonlight spilled across the {T} like thin milk.",
            "Above the {T}, the stars glittered cold and sharp.",
        ),
    },
}

# Coherence faults, used on purpose by the generator.
NON_SEQUITURS: tuple[str, ...] = (
    "Somewhere far away, a {T} sat forgotten in the {L}.",
    "A {T} rolled slowly across the floor of the {L}.",
    "The {L} had once been famous for its {T}.",
    "Long ago, a {T} was sold at the {L} for a single penny.",
)
PLACE_JUMPS: tuple[str, ...] = (
    "Suddenly {N} was standing in the {L}.",
    "{N} wandered into the {L} for no reason at all.",
    "All at once {N} was back at the {L}.",
)
STRANGER_LINES: tuple[str, ...] = (
    "{N} waved from across the room.",
    "{N} watched them from the doorway.",
    "{N} called a greeting and walked on.",
)

# Filler sentences that carry no quality signal (used to reach 3 sentences).
NEUTRAL_LINES: tuple[str, ...] = (
    "Nobody spoke for a while.",
    "For a moment everything was still.",
    "{N} glanced at {M}.",
    "{N} turned to {M}.",
)

STORY_OPENERS: tuple[str, ...] = (
    "It was {time} when {A} and {B} reached the {L}.",
    "{A} and {B} arrived at the {L} {time}.",
    "{time_cap}, {A} led {B} to the {L}.",
)
STORY_MOTIVES: tuple[str, ...] = (
    "{A} had come looking for the {T}.",
    "Everyone said the {T} was hidden somewhere nearby.",
    "{A} had heard rumors about the {T}.",
    "{A} still remembered the day the {T} went missing.",
)

# Story-like end phrases for `startend:end_checker` (no commas, no time).
END_PHRASES: tuple[str, ...] = (
    "And that was only the beginning.",
    "Nothing would ever be the same again.",
    "No one spoke of it again.",
    "It was far from over.",
    "The rest is another story.",
)
KEYWORD_SENTENCES: tuple[str, ...] = (
    "{N} noticed the {T} lying nearby.",
    "Close by lay the {T}.",
    "{N} spotted the {T} in the shadows.",
)
POSTSCRIPTS: tuple[str, ...] = (
    "P.S. {N} never forgot that day.",
    "P.S. The {T} is still there.",
    "P.S. {N} kept the story a secret for years.",
)
TITLE_TEMPLATES: tuple[str, ...] = (
    "The {T}",
    "{N} and the {T}",
    "A Secret at the {L}",
)
# Common words that constraint prompts may forbid, with stand-ins that keep
# the sentence grammatical (an empty stand-in deletes the word).
FORBIDDEN_SWAPS: dict[str, str] = {
    "said": "replied",
    "very": "",
    "then": "soon",
    "heart": "pulse",
    "felt": "seemed",
    "suddenly": "abruptly",
}

# Function words and fillers that are valid anywhere.
# fmt: off
EXTRA_WORDS: tuple[str, ...] = (
    "a", "an", "the", "and", "but", "or", "so", "of", "to", "in", "on", "at",
    "by", "for", "with", "from", "into", "over", "under", "up", "down", "out",
    "off", "as", "it", "its", "is", "was", "were", "be", "been", "had", "has",
    "have", "he", "she", "him", "her", "his", "hers", "they", "them", "their",
    "we", "us", "our", "you", "your", "i", "me", "my", "mine", "this", "that",
    "these", "those", "there", "here", "not", "no", "nor", "all", "some",
    "any", "each", "every", "one", "two", "three", "when", "while", "where",
    "who", "what", "which", "why", "how", "then", "again", "still", "just",
    "only", "too", "also", "s", "t", "ps", "story", "end", "day", "after",
    "before", "later", "soon", "now", "around", "through", "across", "behind",
    "beside", "near", "nearby", "if", "than", "because", "would", "could",
    "should", "will", "can", "did", "do", "does", "very", "much", "more",
    "most", "little", "long",
)
# fmt: on
