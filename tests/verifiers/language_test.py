"""Tests for rlcs_jax.verifiers.language: offline language identification."""

import pytest

from rlcs_jax.verifiers import language

SAMPLES = {
    "en": "The old man walked to the harbor and watched the boats come in.",
    "es": "El viejo caminó hasta el puerto y miró cómo llegaban los barcos.",
    "fr": "Le vieil homme est allé au port et il a regardé les bateaux.",
    "de": "Der alte Mann ging zum Hafen und sah, wie die Boote ankamen.",
    "it": "Il vecchio è andato al porto e ha guardato le barche arrivare.",
    "pt": "O velho foi até o porto e ficou olhando os barcos chegarem.",
    "pl": "Stary człowiek poszedł do portu i patrzył, jak łodzie wpływają.",
    "fi": "Vanha mies käveli satamaan ja katsoi, kun veneet tulivat.",
    "vi": "Ông lão đi bộ ra bến cảng và nhìn những con thuyền cập bến.",
    "sw": "Mzee alitembea hadi bandarini na kuangalia boti zikiingia.",
    "ru": "Старик пошёл в гавань и смотрел, как приходят лодки.",
    "uk": "Старий пішов до гавані і дивився, як припливають човни.",
    "bg": "Старецът отиде до пристанището и гледаше как влизат лодките.",
    "ar": "ذهب الرجل العجوز إلى الميناء وشاهد القوارب وهي تصل.",
    "fa": "پیرمرد به بندر رفت و آمدن قایق‌ها را تماشا کرد.",
    "ur": "بوڑھا آدمی بندرگاہ گیا اور کشتیوں کو آتے ہوئے دیکھا۔",
    "hi": "बूढ़ा आदमी बंदरगाह तक गया और नावों को आते हुए देखा। यह सुंदर है।",
    "mr": "म्हातारा माणूस बंदरावर गेला आणि होड्या पाहिल्या. हे सुंदर आहे.",
    "ne": "बूढो मान्छे बन्दरगाह गयो र डुङ्गाहरू आएको हेर्यो। यो राम्रो छ।",
    "zh": "老人走到港口，看着船只进港。",
    "ja": "老人は港まで歩いて、船が入ってくるのを見ていた。",
    "ko": "노인은 항구까지 걸어가서 배들이 들어오는 것을 지켜보았다.",
    "th": "ชายชราเดินไปที่ท่าเรือและมองดูเรือเข้ามา",
    "el": "Ο γέρος περπάτησε ως το λιμάνι και κοίταζε τα καράβια.",
    "he": "הזקן הלך לנמל והסתכל על הסירות שנכנסות.",
    "bn": "বৃদ্ধ লোকটি বন্দরে হেঁটে গেলেন এবং নৌকাগুলি আসতে দেখলেন।",
    "ta": "முதியவர் துறைமுகத்திற்கு நடந்து சென்று படகுகள் வருவதைப் பார்த்தார்.",
    "te": "వృద్ధుడు ఓడరేవుకు నడిచి వెళ్లి పడవలు రావడం చూశాడు.",
    "kn": "ಮುದುಕ ಬಂದರಿಗೆ ನಡೆದು ದೋಣಿಗಳು ಬರುವುದನ್ನು ನೋಡಿದನು.",
    "ml": "വൃദ്ധൻ തുറമുഖത്തേക്ക് നടന്നു, ബോട്ടുകൾ വരുന്നത് നോക്കി.",
    "gu": "વૃદ્ધ માણસ બંદરે ગયો અને હોડીઓ આવતી જોઈ.",
    "pa": "ਬੁੱਢਾ ਆਦਮੀ ਬੰਦਰਗਾਹ ਗਿਆ ਅਤੇ ਕਿਸ਼ਤੀਆਂ ਨੂੰ ਆਉਂਦੇ ਵੇਖਿਆ।",
}


def test_every_named_language_has_a_sample():
  assert set(SAMPLES) == set(language.LANGUAGE_NAMES)


@pytest.mark.parametrize("code", sorted(SAMPLES))
def test_detects_sample(code):
  assert language.detect_language(SAMPLES[code]) == code


@pytest.mark.parametrize("passage", ["", "  ", "1234 !!! 😀", "HELLO WORLD"])
def test_undetectable_returns_none(passage):
  assert language.detect_language(passage) is None


def test_dominant_script_wins():
  assert (
      language.detect_language("我今天很高兴，因为天气很好，我们去公园 OK")
      == "zh"
  )
  assert (
      language.detect_language(
          "The word 猫 means cat and it is the one I like."
      )
      == "en"
  )


def test_long_text_is_sampled():
  passage = SAMPLES["fr"] + " " + "x" * 100_000 + " " + SAMPLES["fr"]
  assert language.detect_language(passage) == "fr"
