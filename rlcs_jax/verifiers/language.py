"""Offline language identification for `language:response_language`.

Owns `detect_language`, a small script-and-stopword heuristic that replaces
IFEval's `langdetect` (which ships n-gram profiles we do not bundle). It
knows the 30 ISO 639-1 codes IFEval's prompts use plus zh and el
(`LANGUAGE_NAMES`).

How it decides:

1. Count letters per writing system with Unicode block ranges; the system
   with the most letters wins (a CJK ideograph counts as one letter).
2. Scripts used by one language decide alone: Hangul → ko, Thai → th,
   Greek → el, Hebrew → he, Bengali → bn, Gurmukhi → pa, Gujarati → gu,
   Tamil → ta, Telugu → te, Kannada → kn, Malayalam → ml. Han with kana
   (at least 5% of the CJK letters) → ja, Han alone → zh.
3. Shared scripts are settled by frequent function words plus letters only
   one language uses: Latin → en, es, fr, de, it, pt, pl, fi, vi, sw;
   Cyrillic → ru, uk, bg; Arabic → ar, fa, ur; Devanagari → hi, mr, ne.

Limits: Latin-script text with no function word and no telling letter
(a list of names, "HELLO WORLD") is undetectable, and `detect_language`
returns None; the rule then passes, as IFEval counts a `langdetect` failure
as followed. Closely related languages that share script and most function
words (e.g. Catalan vs Spanish, Hindi vs Marathi on short text) can be
confused. Mixed-language text is labelled by its dominant script and then
its dominant function words. Texts over 24k characters are judged on
their first, middle and last 8k characters. Accuracy on a paragraph of
ordinary prose in a supported language is high; on a few words it is a
guess.
"""

import re

# ISO 639-1 codes to names, as in IFEval's `instructions_util`.
LANGUAGE_NAMES = {
    "en": "English",
    "es": "Spanish",
    "pt": "Portuguese",
    "ar": "Arabic",
    "hi": "Hindi",
    "fr": "French",
    "ru": "Russian",
    "de": "German",
    "ja": "Japanese",
    "it": "Italian",
    "bn": "Bengali",
    "uk": "Ukrainian",
    "th": "Thai",
    "ur": "Urdu",
    "ta": "Tamil",
    "te": "Telugu",
    "bg": "Bulgarian",
    "ko": "Korean",
    "pl": "Polish",
    "he": "Hebrew",
    "fa": "Persian",
    "vi": "Vietnamese",
    "ne": "Nepali",
    "sw": "Swahili",
    "kn": "Kannada",
    "mr": "Marathi",
    "gu": "Gujarati",
    "pa": "Punjabi",
    "ml": "Malayalam",
    "fi": "Finnish",
    # Not in IFEval's table; detectable by script here.
    "zh": "Chinese",
    "el": "Greek",
}

# Letters of each writing system, as regex character classes.
_SCRIPTS = {
    "latin": "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff",
    "cyrillic": "\u0400-\u04ff",
    "greek": "\u0370-\u03ff\u1f00-\u1fff",
    "hebrew": "\u05d0-\u05ea\u05f0-\u05f2",
    "arabic": (
        "\u0620-\u064a\u066e-\u06d3\u06fa-\u06fc\u0750-\u077f"
        "\ufb50-\ufdff\ufe70-\ufefc"
    ),
    "devanagari": "\u0900-\u097f",
    "bengali": "\u0980-\u09ff",
    "gurmukhi": "\u0a00-\u0a7f",
    "gujarati": "\u0a80-\u0aff",
    "tamil": "\u0b80-\u0bff",
    "telugu": "\u0c00-\u0c7f",
    "kannada": "\u0c80-\u0cff",
    "malayalam": "\u0d00-\u0d7f",
    "thai": "\u0e00-\u0e7f",
    "hangul": "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f",
    "kana": "\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f",
    "han": "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df",
}
_SCRIPT_PATTERNS = {
    name: re.compile("[" + chars + "]") for name, chars in _SCRIPTS.items()
}

# Scripts that only one supported language uses.
_SINGLE_LANGUAGE_SCRIPTS = {
    "hangul": "ko",
    "thai": "th",
    "greek": "el",
    "hebrew": "he",
    "bengali": "bn",
    "gurmukhi": "pa",
    "gujarati": "gu",
    "tamil": "ta",
    "telugu": "te",
    "kannada": "kn",
    "malayalam": "ml",
}

# Frequent function words per language, for scripts several languages share.
_STOPWORDS = {
    "latin": {
        "en": (
            "the and of to is in it that was for with you he she on are as"
            " his her they at be this have from or had by not but what were"
            " we when your can there an which their said if will my would so"
            " has been i me him them our its who do does did just into than"
            " then these those out about up all one more like could should"
        ),
        "es": (
            "el la los las de del que y en un una es por con para no se su"
            " sus lo al como más pero muy está son fue ya yo también este"
            " esta cuando porque hay sobre entre sin todo nos le"
        ),
        "fr": (
            "le la les de des du et est un une en que qui dans pour pas sur"
            " au aux avec ce cette il elle ils nous vous je ne son sa ses"
            " mais ou plus sont été être leur comme très tout"
        ),
        "de": (
            "der die das und ist nicht ein eine zu den dem des mit sich auf"
            " für von im es auch als an wie ich sie er wir ihr dass aber"
            " oder wenn noch nach bei aus sind war wird hat haben kein nur"
        ),
        "it": (
            "il lo la gli le di del della che e è un una in per con non si"
            " da dei delle al alla sono ma come più anche questo questa nel"
            " nella ci mi ho ha"
        ),
        "pt": (
            "o os as de do da dos das que e é um uma em no na nos nas para"
            " com não se por mais mas como ao ele ela eu você foi são está"
            " muito também isso este esta"
        ),
        "pl": (
            "i w z na nie się to że do jest jak o co ale po tak od za jego"
            " już przez dla był była tylko czy jestem ten ta"
        ),
        "fi": (
            "ja on ei se että oli hän mutta kun niin joka tai ovat myös"
            " kuin minä sinä me ne tämä vain jos olla olen"
        ),
        "vi": (
            "và của là có không một những các được trong cho người này đã"
            " với để khi cũng như tôi anh em rất thì nhưng từ đến ra vào lại"
        ),
        "sw": (
            "na ya wa kwa ni katika za la cha kama hii hiyo yake lakini au"
            " pia sana mimi wewe yeye sisi kuwa alikuwa hakuna kwamba ana"
            " hadi kwenye wakati baada kabla bila sasa tu huyo huu wao kila"
            " nini ndiyo siyo"
        ),
    },
    "cyrillic": {
        "ru": (
            "и в не на что как это он она был была для по из от но мы вы"
            " они его её же бы если уже или когда только"
        ),
        "uk": (
            "і в не на що як це він вона був була для по з від але ми ви"
            " вони його та й із до вже або коли тільки"
        ),
        "bg": (
            "и в на не за от се да е са това че как със към но ние вие те"
            " го ще бъде беше или когато само"
        ),
    },
    "arabic": {
        "ar": (
            "في من على إلى أن التي الذي هذا هذه عن مع كان كانت هو هي لا ما"
            " قد ثم"
        ),
        "fa": "و در به از که این را است با آن برای می یک تا هم شد بود نیز",
        "ur": "کے میں کی ہے اور سے کا کو نے یہ وہ ہیں تھا تھی پر بھی",
    },
    "devanagari": {
        "hi": "है के में की और से को का एक यह पर हैं था थी भी नहीं लिए कि",
        "mr": "आहे आणि या की हे ते होते आहेत व त्या मध्ये करून झाले नाही",
        "ne": "छ र को मा हो पनि यो गर्न छन् थियो भएको लागि गरेको",
    },
}
# Texts longer than three times this are judged on three samples this long.
_SAMPLE_CHARS = 8000

_STOPWORD_SETS = {
    script: {lang: frozenset(words.split()) for lang, words in table.items()}
    for script, table in _STOPWORDS.items()
}

# Letters that only one of the languages sharing a script uses (each
# occurrence scores like one function word).
_TELLING_LETTERS = {
    "latin": {
        "es": "ñ¿¡",
        "pt": "ãõ",
        "de": "ß",
        "pl": "ąęłńśźżć",
        "vi": "ươđăạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ",
    },
    "cyrillic": {"uk": "іїєґ", "ru": "ыэё", "bg": "ъ"},
    # Urdu writes every Persian letter but ژ, so Persian text ties with
    # Urdu on the shared ones and wins the tie by table order.
    "arabic": {"ar": "يكةى", "fa": "پچژگیک", "ur": "پچگیکٹڈڑںےۓھہ"},
}
# Used when a shared script shows no evidence either way.
_DEFAULT_LANGUAGE = {"cyrillic": "ru", "arabic": "ar", "devanagari": "hi"}

# Stripped from the ends of whitespace-separated words. Words are not
# `\w+` runs because vowel signs in Indic scripts are not `\w`.
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~“”‘’«»…—–।॥،؛؟¡¿0123456789"


def _script_counts(text: str) -> dict[str, int]:
  """Counts letters per writing system."""
  return {
      name: len(pattern.findall(text))
      for name, pattern in _SCRIPT_PATTERNS.items()
  }


def _vote(script: str, text: str) -> str | None:
  """Picks the language sharing `script` with the most evidence in `text`."""
  lowered = text.lower()
  words = [word.strip(_PUNCTUATION) for word in lowered.split()]
  telling = _TELLING_LETTERS.get(script, {})
  scores = {}
  for lang, stopwords in _STOPWORD_SETS[script].items():
    score = sum(1 for word in words if word in stopwords)
    score += sum(lowered.count(letter) for letter in telling.get(lang, ""))
    scores[lang] = score
  best = max(scores, key=scores.get)  # First in table order on ties.
  if scores[best] == 0:
    return _DEFAULT_LANGUAGE.get(script)
  return best


def _sample(text: str) -> str:
  """Keeps the head, middle and tail of long texts: enough to decide."""
  if len(text) <= 3 * _SAMPLE_CHARS:
    return text
  middle = (len(text) - _SAMPLE_CHARS) // 2
  return "\n".join(
      (
          text[:_SAMPLE_CHARS],
          text[middle : middle + _SAMPLE_CHARS],
          text[-_SAMPLE_CHARS:],
      )
  )


def detect_language(text: str) -> str | None:
  """Returns the ISO 639-1 code of `text`'s language, or None if unknown."""
  text = _sample(text)
  counts = _script_counts(text)
  counts["cjk"] = counts.pop("han") + counts["kana"]
  kana = counts.pop("kana")
  script = max(counts, key=counts.get)
  if counts[script] == 0:
    return None
  if script == "cjk":
    return "ja" if kana >= max(1, 0.05 * counts["cjk"]) else "zh"
  if script in _SINGLE_LANGUAGE_SCRIPTS:
    return _SINGLE_LANGUAGE_SCRIPTS[script]
  return _vote(script, text)
