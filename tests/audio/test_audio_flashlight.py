"""`--model.decoder flashlight`: torchaudio's ctc_decoder over the same ARPA LM as the own beam search."""

from __future__ import annotations

import numpy as np
import pytest

from trident_audio.decoding import WordNgramLM, prefix_beam_search
from trident_audio.export import decode_ctc
from trident_audio.text import CharTokenizer, train_bpe
from trident_audio.textlm import build_kneser_ney
from trident_core.errors import ConfigError

pytest.importorskip("flashlight.lib.text.decoder",
                    reason="flashlight-text is not installed (the trident-audio[flashlight] extra, CPython 3.11/3.12)")

SENTENCES = ["the cat sat on the mat", "a dog sat on the log", "the dog ran"]


def _peaked(tokenizer: CharTokenizer, text: str, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Three frames per character (the character, then two blanks), with optional noise."""
    ids = tokenizer.encode(text)
    lp = np.full((3 * len(ids), tokenizer.vocab_size), -8.0)
    for i, token in enumerate(ids):
        lp[3 * i, token] = 0.0
        lp[3 * i + 1 : 3 * i + 3, tokenizer.blank] = 0.0
    lp += noise * np.random.default_rng(seed).normal(size=lp.shape)
    return lp - np.log(np.exp(lp).sum(axis=1, keepdims=True))


def test_agrees_with_the_own_beam_search_on_clear_speech() -> None:
    tokenizer = CharTokenizer()
    lm = build_kneser_ney([s.split() for s in SENTENCES], 3)
    for text in [*SENTENCES, "the cat ran on the log"]:
        lp = _peaked(tokenizer, text)
        own = tokenizer.decode(prefix_beam_search(lp, tokenizer.tokens, lm=lm, lm_weight=0.5, word_bonus=1.0))
        assert own == text
        assert decode_ctc(lp, tokenizer, decoder="flashlight", lm=lm, lm_weight=0.5, word_bonus=1.0) == text


def test_the_lm_pulls_a_blurred_word_toward_the_lexicon() -> None:
    tokenizer = CharTokenizer()
    lm = build_kneser_ney([s.split() for s in SENTENCES], 3)
    lp = _peaked(tokenizer, "the cat sat on the mat")
    cat = 3 * 4  # the frame of "c" in "cat" (three frames per character)
    lp[cat, tokenizer.encode("k")[0]] = lp[cat, tokenizer.encode("c")[0]] + 0.1  # acoustics: "kat", barely
    assert tokenizer.decode(prefix_beam_search(lp, tokenizer.tokens)).split()[1] == "kat"
    assert decode_ctc(lp, tokenizer, decoder="flashlight", lm=lm, lm_weight=1.0).split()[1] == "cat"


def test_needs_an_arpa_lm_and_characters() -> None:
    lp = _peaked(CharTokenizer(), "the cat")
    for lm in (None, WordNgramLM.train(SENTENCES)):
        with pytest.raises(ConfigError, match="needs an ARPA LM"):
            decode_ctc(lp, CharTokenizer(), decoder="flashlight", lm=lm)
    bpe = train_bpe(SENTENCES * 4, vocab_size=30)
    with pytest.raises(ConfigError, match="character tokenizers"):
        decode_ctc(lp[:, : bpe.vocab_size], bpe, decoder="flashlight", lm=build_kneser_ney([["the"]], 1))
