"""SentencePiece training and exact round trips."""

import pytest

from rlcs_jax import tokenizer as tok_lib

TEXTS = [
    "Characters: Mara (brave, curious); Tolan (greedy).\n"
    f'Story so far: Mara walked to the mill {i} times. "Hush," she said.\n'
    "Outline: Mara finds the silver key."
    for i in range(300)
]


@pytest.fixture(scope="module")
def sp(tmp_path_factory):
  prefix = str(tmp_path_factory.mktemp("tok") / "sp")
  return tok_lib.SentencePieceTokenizer(
      tok_lib.train_sentencepiece(TEXTS, prefix, vocab_size=400)
  )


def test_special_ids(sp):
  assert (sp.pad_id, sp.unk_id, sp.bos_id, sp.eos_id) == (0, 1, 2, 3)
  assert sp.vocab_size <= 400 and sp.stop_ids == (3,)


@pytest.mark.parametrize(
    "text",
    [
        "Mara found the key.",
        "  two  spaces\n\nand\ttabs  ",
        "naïve café 漢字 🙂",
        "",
        "\n",
        "### Response:",
        "x" * 500,
    ],
)
def test_round_trip_exact(sp, text):
  assert sp.decode(sp.encode(text)) == text


def test_prompt_formatting(sp):
  ids = sp.encode_prompt("Continue.")
  assert ids[0] == sp.bos_id
  assert sp.decode(ids) == "Continue." + tok_lib.PLAIN_RESPONSE_MARKER
  # Specials are dropped by decode.
  assert sp.decode([sp.bos_id] + sp.encode("hi") + [sp.eos_id, 0]) == "hi"


def test_missing_model_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="tokenizer model not found"):
    tok_lib.SentencePieceTokenizer(str(tmp_path / "nope.model"))
