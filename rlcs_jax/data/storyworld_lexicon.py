"""The StoryWorld lexicon: what exists in the world and how it is named.

Owns the world's entities, as tables shared by the generator
(`storyworld.py`, `storyworld_continuations.py`), the quality analysis
(`quality.py`), the teacher (`teacher.py`) and the constraint prompts
(`storyworld_constraints.py`):
character names, traits with trait-consistent actions and dialogue lines,
places, objects, times of day, outline actions with every verb form that
realises them, and emotions with the words that express them. How sentences
are phrased (templates, bland or vivid wording) lives in
`storyworld_phrases.py`. Pure data: no logic, no randomness.

Conventions. Action and trait phrases are past-tense verb phrases without a
subject; `{T}` is a target (object, place or person) and `{R}` a recipient.
Place and object tables map a head noun (used for matching) to the phrase
shown in text ("lighthouse" -> "old lighthouse"). Trait phrases contain no
emotion word, phrasing marker or action verb form, so the five quality
dimensions stay separable (tests check these invariants). Long flat tables
are kept compact with `# fmt: off`.
"""

DIMENSIONS: tuple[str, ...] = (
    "coherence",
    "originality",
    "emotional_engagement",
    "outline_adherence",
    "character_consistency",
)

# Names are chosen not to be English words, so lowercase text still matches.
# fmt: off
NAMES: dict[str, str] = {
    "Mira": "she", "Tomas": "he", "Elin": "she", "Bram": "he", "Sana": "she",
    "Joss": "he", "Ilse": "she", "Oren": "he", "Lira": "she", "Nico": "he",
    "Nadia": "she", "Hugo": "he", "Tessa": "she", "Finn": "he", "Yara": "she",
    "Milo": "he", "Dara": "she", "Emil": "he", "Ines": "she", "Kai": "he",
    "Rosa": "she", "Otto": "he", "Vera": "she", "Silas": "he", "Anya": "she",
    "Felix": "he", "Zora": "she", "Jonah": "he", "Maren": "she", "Aldo": "he",
    "Greta": "she", "Cyrus": "he", "Lena": "she", "Gideon": "he",
    "Petra": "she", "Rafe": "he", "Edda": "she", "Ivo": "he", "Hana": "she",
    "Juno": "he",
}
# fmt: on

PRONOUNS: dict[str, dict[str, str]] = {
    "she": {"S": "she", "O": "her", "P": "her"},
    "he": {"S": "he", "O": "him", "P": "his"},
}

# Each axis is (trait, opposite): acting like the opposite contradicts.
TRAIT_AXES: tuple[tuple[str, str], ...] = (
    ("brave", "timid"),
    ("kind", "cruel"),
    ("honest", "deceitful"),
    ("generous", "greedy"),
    ("patient", "impatient"),
    ("calm", "hot-tempered"),
    ("cheerful", "gloomy"),
    ("clever", "foolish"),
    ("loyal", "treacherous"),
    ("humble", "arrogant"),
    ("hardworking", "lazy"),
)

OPPOSITE: dict[str, str] = {
    **{a: b for a, b in TRAIT_AXES},
    **{b: a for a, b in TRAIT_AXES},
}

# Trait-consistent actions; the opposite trait's actions are inconsistent.
TRAIT_ACTIONS: dict[str, tuple[str, ...]] = {
    "brave": (
        "stepped forward without hesitation",
        "volunteered to go first",
        "faced the danger head on",
    ),
    "timid": (
        "hung back behind the others",
        "refused to take another step",
        "begged to turn back at once",
    ),
    "kind": (
        "shared the last of the bread",
        "spoke gently to a stray dog",
        "bandaged a stranger's hand",
    ),
    "cruel": (
        "kicked a stray dog aside",
        "mocked an old man without pity",
        "tore up a child's drawing",
    ),
    "honest": (
        "admitted the mistake at once",
        "returned the extra change",
        "owned up to the broken window",
    ),
    "deceitful": (
        "lied without blinking",
        "pretended to know nothing",
        "swapped the labels when no one was watching",
    ),
    "generous": (
        "paid for everyone's supper",
        "emptied a purse for a beggar",
        "left a gift on a neighbor's doorstep",
    ),
    "greedy": (
        "counted the gold twice",
        "kept the biggest share",
        "hoarded every scrap of food",
    ),
    "patient": (
        "waited quietly for the right moment",
        "explained it a third time without complaint",
        "untied the knot one strand at a time",
    ),
    "impatient": (
        "tapped a foot at the delay",
        "pushed ahead before anyone was ready",
        "drummed on the table",
    ),
    "calm": (
        "drew a slow breath and kept still",
        "spoke in a steady voice",
        "sat down and thought it through",
    ),
    "hot-tempered": (
        "slammed a fist on the table",
        "kicked over a chair",
        "shouted at the nearest person",
    ),
    "cheerful": (
        "whistled a bright tune",
        "cracked a joke to lift the mood",
        "hummed while working",
    ),
    "gloomy": (
        "stared at the floor without a word",
        "predicted that everything would fail",
        "kicked at the dust and grumbled",
    ),
    "clever": (
        "worked out the riddle in a moment",
        "drew a quick plan in the dirt",
        "noticed the hidden pattern",
    ),
    "foolish": (
        "pulled the wrong lever",
        "tripped over the same root twice",
        "forgot the plan within a minute",
    ),
    "loyal": (
        "stayed at a friend's side",
        "kept every promise",
        "stood guard through the long hours",
    ),
    "treacherous": (
        "broke a solemn promise",
        "sided with the rivals",
        "abandoned a friend in trouble",
    ),
    "humble": (
        "refused any praise",
        "shared the credit with everyone",
        "cleaned up after the others",
    ),
    "arrogant": (
        "boasted about being the best",
        "ignored everyone's advice",
        "sneered at the others",
    ),
    "hardworking": (
        "worked until both hands were raw",
        "rose early to finish the chores",
        "carried load after load",
    ),
    "lazy": (
        "napped in the shade",
        "left the chores half done",
        "yawned and put the work off",
    ),
}

# Trait-consistent dialogue lines (spoken by the character).
TRAIT_LINES: dict[str, tuple[str, ...]] = {
    "brave": ("I will go first", "Stay behind me"),
    "timid": ("Maybe we should wait here", "Please do not make me go in"),
    "kind": ("Take mine, you need it more", "Let me carry that for you"),
    "cruel": ("You deserve every bit of this", "Nobody will miss you"),
    "honest": ("The fault is mine", "I will not lie to you"),
    "deceitful": ("I was never even there", "Trust me, it is perfectly safe"),
    "generous": ("Keep it, it is yours now", "Everyone eats before I do"),
    "greedy": ("That share is mine", "I want the larger half"),
    "patient": ("There is no need to rush", "We can wait a little longer"),
    "impatient": ("Hurry up, we are wasting time", "I cannot wait any longer"),
    "calm": ("Let us think this through", "Stay still and breathe"),
    "hot-tempered": ("Get out of my way", "Say that again and see"),
    "cheerful": ("Look on the bright side", "This will make a grand story"),
    "gloomy": ("This will end badly", "Nothing ever goes our way"),
    "clever": ("Wait, I know how this works", "The answer is in the pattern"),
    "foolish": ("Which way is up again", "I forgot what we came for"),
    "loyal": ("I will never leave you", "Where you go, I go"),
    "treacherous": ("I owe you nothing", "Every bargain can be broken"),
    "humble": ("I only did my part", "Others did more than me"),
    "arrogant": ("I alone can do this", "Step aside and watch a master"),
    "hardworking": ("Let me finish this first", "Work first, rest later"),
    "lazy": ("Someone else can do it", "Wake me when it is over"),
}

# Head noun -> phrase shown in text (always preceded by "the").
# fmt: off
PLACES: dict[str, str] = {
    "lighthouse": "old lighthouse", "harbor": "windy harbor",
    "mill": "abandoned mill", "orchard": "apple orchard",
    "library": "dusty library", "market": "crowded market",
    "cellar": "damp cellar", "bridge": "narrow bridge",
    "forest": "pine forest", "meadow": "wide meadow",
    "chapel": "ruined chapel", "tower": "clock tower", "inn": "crooked inn",
    "bakery": "village bakery", "garden": "walled garden", "cave": "sea cave",
    "workshop": "cluttered workshop", "station": "railway station",
    "greenhouse": "glass greenhouse", "attic": "cramped attic",
    "barn": "red barn", "quarry": "flooded quarry", "pier": "wooden pier",
    "courtyard": "castle courtyard", "observatory": "hilltop observatory",
    "marsh": "misty marsh", "vineyard": "terraced vineyard",
    "monastery": "silent monastery", "museum": "little museum",
    "schoolhouse": "empty schoolhouse", "kitchen": "warm kitchen",
    "tavern": "noisy tavern", "boathouse": "leaky boathouse",
    "graveyard": "overgrown graveyard",
}
# fmt: on

# fmt: off
OBJECTS: dict[str, str] = {
    "key": "silver key", "lantern": "brass lantern", "map": "torn map",
    "letter": "sealed letter", "compass": "old compass",
    "locket": "gold locket", "box": "wooden box", "rope": "frayed rope",
    "dagger": "bone dagger", "diary": "faded diary", "coin": "copper coin",
    "ring": "iron ring", "mirror": "cracked mirror",
    "violin": "battered violin", "feather": "blue feather",
    "bottle": "green bottle", "candle": "tallow candle", "scarf": "red scarf",
    "basket": "wicker basket", "blanket": "wool blanket",
    "telescope": "brass telescope", "umbrella": "black umbrella",
    "kite": "paper kite", "necklace": "pearl necklace", "bell": "tiny bell",
    "flute": "wooden flute", "shell": "spiral shell",
    "painting": "small painting", "photograph": "faded photograph",
    "ticket": "train ticket", "jar": "honey jar", "crown": "tin crown",
    "shovel": "rusty shovel", "hammer": "heavy hammer", "book": "leather book",
    "lamp": "oil lamp", "puppet": "wooden puppet", "egg": "painted egg",
    "sword": "notched sword", "quill": "white quill", "glove": "leather glove",
    "teapot": "chipped teapot", "wheel": "cart wheel", "harp": "small harp",
    "medal": "bronze medal",
}
# fmt: on

# fmt: off
OPENABLE: tuple[str, ...] = (
    "box", "letter", "locket", "diary", "bottle", "jar", "umbrella", "book",
    "teapot",
)
# fmt: on
# fmt: off
REPAIRABLE: tuple[str, ...] = (
    "lantern", "compass", "violin", "kite", "umbrella", "bell", "telescope",
    "wheel", "mirror", "flute", "lamp", "puppet", "harp",
)
# fmt: on
READABLE: tuple[str, ...] = ("map", "letter", "diary", "book", "ticket")

TIMES: tuple[str, ...] = ("dawn", "morning", "noon", "dusk", "night")
TIME_PHRASES: dict[str, str] = {
    "dawn": "at dawn",
    "morning": "in the morning",
    "noon": "at noon",
    "dusk": "at dusk",
    "night": "at night",
}
# Words that fix the time of day; mentioning an incompatible one contradicts.
TIME_WORDS: dict[str, tuple[str, ...]] = {
    "dawn": ("dawn", "sunrise", "first light"),
    "morning": ("morning",),
    "noon": ("noon", "midday"),
    "dusk": ("dusk", "twilight", "sunset"),
    "night": ("night", "moonlight", "midnight", "stars", "moon"),
}
COMPATIBLE_TIMES: dict[str, tuple[str, ...]] = {
    "dawn": ("dawn", "morning"),
    "morning": ("dawn", "morning"),
    "noon": ("noon",),
    "dusk": ("dusk", "night"),
    "night": ("dusk", "night"),
}

# Outline actions. `target`: object | place | person | object_person
# (object given to a recipient) | secret_person. `pool` restricts objects.
# `forms` are every verb form that realises the action (any tense).
# fmt: off
ACTIONS: dict[str, dict] = {
    "find": {
        "target": "object", "pool": None,
        "present": "finds the {T}",
        "bland": ("found the {T}",),
        "vivid": ("discovered the {T}", "unearthed the {T}",
            "stumbled upon the {T}"),
        "forms": ("find", "finds", "found", "discover", "discovers",
            "discovered", "unearth", "unearths", "unearthed", "stumbled upon",
            "stumbles upon"),
        "moods": ("joy", "surprise", "relief"),
    },
    "lose": {
        "target": "object", "pool": None,
        "present": "loses the {T}",
        "bland": ("lost the {T}",),
        "vivid": ("misplaced the {T}", "mislaid the {T}"),
        "forms": ("lose", "loses", "lost", "misplaced", "misplaces", "mislaid",
            "mislays"),
        "moods": ("sadness", "fear", "anger"),
    },
    "open": {
        "target": "object", "pool": OPENABLE,
        "present": "opens the {T}",
        "bland": ("opened the {T}",),
        "vivid": ("pried open the {T}", "unsealed the {T}",
            "unlatched the {T}"),
        "forms": ("open", "opens", "opened", "pried open", "pries open",
            "unsealed", "unseals", "unlatched", "unlatches"),
        "moods": ("surprise", "fear", "joy"),
    },
    "hide": {
        "target": "object", "pool": None,
        "present": "hides the {T}",
        "bland": ("hid the {T}",),
        "vivid": ("tucked away the {T}", "concealed the {T}", "buried the {T}"),
        "forms": ("hide", "hides", "hid", "tucked away", "tucks away",
            "concealed", "conceals", "buried", "buries"),
        "moods": ("fear", "relief"),
    },
    "give": {
        "target": "object_person", "pool": None,
        "present": "gives the {T} to {R}",
        "bland": ("gave the {T} to {R}",),
        "vivid": ("handed the {T} to {R}", "pressed the {T} into {R}'s hands",
            "entrusted the {T} to {R}"),
        "forms": ("give", "gives", "gave", "handed", "pressed", "presses",
            "entrusted", "entrusts"),
        "moods": ("joy", "relief", "sadness"),
    },
    "steal": {
        "target": "object", "pool": None,
        "present": "steals the {T}",
        "bland": ("took the {T}",),
        "vivid": ("snatched the {T}", "pocketed the {T}", "swiped the {T}"),
        "forms": ("steal", "steals", "stole", "took", "takes", "snatched",
            "snatches", "pocketed", "pockets", "swiped", "swipes"),
        "moods": ("fear", "anger"),
    },
    "repair": {
        "target": "object", "pool": REPAIRABLE,
        "present": "repairs the {T}",
        "bland": ("fixed the {T}",),
        "vivid": ("mended the {T}", "patched up the {T}", "restored the {T}"),
        "forms": ("repair", "repairs", "repaired", "fixed", "fixes", "mended",
            "mends", "patched up", "patches up", "restored", "restores"),
        "moods": ("joy", "relief"),
    },
    "read": {
        "target": "object", "pool": READABLE,
        "present": "reads the {T}",
        "bland": ("read the {T}",),
        "vivid": ("pored over the {T}", "studied the {T}",
            "deciphered the {T}"),
        "forms": ("read", "reads", "pored over", "pores over", "studied",
            "studies", "deciphered", "deciphers"),
        "moods": ("surprise", "sadness", "fear"),
    },
    "travel": {
        "target": "place", "pool": None,
        "present": "travels to the {T}",
        "bland": ("went to the {T}",),
        "vivid": ("hurried to the {T}", "trudged to the {T}",
            "set off for the {T}"),
        "forms": ("travel to", "travels to", "traveled to", "went to",
            "goes to", "hurried to", "hurries to", "trudged to", "trudges to",
            "set off for", "sets off for"),
        "moods": ("fear", "joy", "sadness"),
    },
    "escape": {
        "target": "place", "pool": None,
        "present": "escapes from the {T}",
        "bland": ("got out of the {T}",),
        "vivid": ("fled the {T}", "slipped out of the {T}",
            "broke out of the {T}"),
        "forms": ("escape from", "escapes from", "escaped from", "got out of",
            "gets out of", "fled", "flees", "slipped out of", "slips out of",
            "broke out of", "breaks out of"),
        "moods": ("relief", "fear"),
    },
    "search": {
        "target": "place", "pool": None,
        "present": "searches the {T}",
        "bland": ("looked around the {T}",),
        "vivid": ("combed the {T}", "scoured the {T}", "ransacked the {T}"),
        "forms": ("search", "searches", "searched", "looked around",
            "looks around", "combed", "combs", "scoured", "scours",
            "ransacked", "ransacks"),
        "moods": ("fear", "surprise"),
    },
    "meet": {
        "target": "person", "pool": None,
        "present": "meets {T}",
        "bland": ("met {T}",),
        "vivid": ("ran into {T}", "crossed paths with {T}",
            "came face to face with {T}"),
        "forms": ("meet", "meets", "met", "ran into", "runs into",
            "crossed paths with", "crosses paths with",
            "came face to face with", "comes face to face with"),
        "moods": ("surprise", "joy", "fear"),
    },
    "argue": {
        "target": "person", "pool": None,
        "present": "argues with {T}",
        "bland": ("argued with {T}",),
        "vivid": ("quarreled with {T}", "clashed with {T}", "snapped at {T}"),
        "forms": ("argue with", "argues with", "argued with", "quarreled with",
            "quarrels with", "clashed with", "clashes with", "snapped at",
            "snaps at"),
        "moods": ("anger", "sadness"),
    },
    "help": {
        "target": "person", "pool": None,
        "present": "helps {T}",
        "bland": ("helped {T}",),
        "vivid": ("assisted {T}", "lent a hand to {T}", "aided {T}"),
        "forms": ("help", "helps", "helped", "assisted", "assists",
            "lent a hand to", "lends a hand to", "aided", "aids"),
        "moods": ("relief", "joy"),
    },
    "follow": {
        "target": "person", "pool": None,
        "present": "follows {T}",
        "bland": ("followed {T}",),
        "vivid": ("trailed {T}", "shadowed {T}", "tracked {T}"),
        "forms": ("follow", "follows", "followed", "trailed", "trails",
            "shadowed", "shadows", "tracked", "tracks"),
        "moods": ("fear", "surprise"),
    },
    "reveal": {
        "target": "secret_person", "pool": None,
        "present": "tells {R} the secret",
        "bland": ("told {R} the secret",),
        "vivid": ("confessed the secret to {R}", "revealed the secret to {R}",
            "whispered the secret to {R}"),
        "forms": ("tell", "tells", "told", "confessed", "confesses",
            "revealed", "reveals", "whispered", "whispers"),
        "moods": ("surprise", "anger", "sadness"),
    },
}
# fmt: on

EMOTIONS: tuple[str, ...] = (
    "joy",
    "fear",
    "anger",
    "sadness",
    "surprise",
    "relief",
)
EMOTION_NOUNS: dict[str, str] = {
    "joy": "joy",
    "fear": "fear",
    "anger": "anger",
    "sadness": "grief",
    "surprise": "surprise",
    "relief": "relief",
}
EMOTION_ADJECTIVES: dict[str, str] = {
    "joy": "joyful",
    "fear": "frightened",
    "anger": "angry",
    "sadness": "sorrowful",
    "surprise": "amazed",
    "relief": "relieved",
}
# Keywords that identify an emotion and its intensity in any text.
EMOTION_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "joy": {
        "strong": ("delight", "elation", "joy", "overjoyed", "beamed"),
        "mild": ("smiled", "glad", "pleased", "happy"),
    },
    "fear": {
        "strong": ("dread", "terror", "trembled", "pounded", "petrified"),
        "mild": ("uneasy", "nervous", "worried"),
    },
    "anger": {
        "strong": ("fury", "rage", "seethed", "furious"),
        "mild": ("frowned", "annoyed", "irritated"),
    },
    "sadness": {
        "strong": ("grief", "wept", "despair", "sobbed", "heartbroken"),
        "mild": ("sad", "sighed", "downcast"),
    },
    "surprise": {
        "strong": ("astonished", "gasped", "stunned", "disbelief"),
        "mild": ("surprised", "blinked", "puzzled"),
    },
    "relief": {
        "strong": ("relief", "thankful", "sagged"),
        "mild": ("relaxed", "calmer", "eased"),
    },
}
# Phrases of flat affect: an emotional beat with no feeling in it.
FLAT_WORDS: tuple[str, ...] = (
    "shrugged",
    "nothing much",
    "did not care",
    "felt fine",
    "okay",
    "bored",
)
