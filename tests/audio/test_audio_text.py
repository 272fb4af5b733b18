"""Text normalisation (case, punctuation, numbers as words) and the character / BPE tokenizers."""

from __future__ import annotations

import pytest

from trident_audio.text import (
    CharTokenizer,
    OutOfVocabularyError,
    TextNormalizer,
    number_to_words,
    tokenizer_from_dict,
    train_bpe,
)


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("Order #1,204 hasn't arrived!", "order number one thousand two hundred four hasn't arrived"),
        ("It's the 21st of May, at 10:30.", "it's the twenty first of may at ten thirty"),
        ("I paid $5.50 \u2014 \u201ctwice\u201d", "i paid five dollars and fifty cents twice"),
        ("Caf\u00e9 3.14 100% 'quoted'", "cafe three point one four one hundred percent quoted"),
        ("  multiple   spaces\tand-dashes ", "multiple spaces and dashes"),
    ],
)
def test_normalizer_spells_numbers_and_drops_punctuation(written: str, spoken: str) -> None:
    assert TextNormalizer()(written) == spoken


def test_number_words() -> None:
    assert number_to_words(0) == "zero"
    assert number_to_words(1_000_001) == "one million one"
    assert number_to_words(90_210) == "ninety thousand two hundred ten"


def test_normalizer_options_keep_case() -> None:
    assert TextNormalizer(lowercase=False, expand_numbers=False)("Hi Bob 42") == "Hi Bob 42"


def test_char_tokenizer_round_trip_and_oov() -> None:
    tok = CharTokenizer()
    assert tok.tokens[0] == "<blank>" and tok.vocab_size == 29
    assert tok.decode(tok.encode("don't stop")) == "don't stop"
    with pytest.raises(OutOfVocabularyError, match="not in the vocabulary"):
        tok.encode("na\u00efve \u4e2d")
    assert tokenizer_from_dict(tok.to_dict()).tokens == tok.tokens


def test_bpe_tokenizer_trains_and_round_trips() -> None:
    norm = TextNormalizer()
    texts = [norm(f"please check order {i} for customer number {i * 7}") for i in range(60)]
    tok = train_bpe(texts, vocab_size=60)
    ids = tok.encode("please check order five")
    assert 0 not in ids and len(ids) < len("please check order five")
    again = tokenizer_from_dict(tok.to_dict())  # as stored in checkpoints (base64 model)
    assert again.decode(ids) == "please check order five"
    with pytest.raises(OutOfVocabularyError):
        tok.encode("zebra quiz")  # z and q never appear in the training texts
