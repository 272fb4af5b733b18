"""Word timestamps of `infer`: CTC forced alignment of the decoded transcript, ordered and inside the audio."""

from __future__ import annotations

import numpy as np
import pytest

from trident_audio.export import decode_ctc, word_timestamps
from trident_audio.text import CharTokenizer


def _posteriors(tokenizer: CharTokenizer, path: list[str], frames: int) -> np.ndarray:
    """Log-probabilities peaked on ``path`` (one symbol per frame, ``-`` for blank), the rest blank."""
    probs = np.full((frames, tokenizer.vocab_size), 1e-4, dtype=np.float32)
    for t in range(frames):
        symbol = path[t] if t < len(path) else "-"
        probs[t, tokenizer.blank if symbol == "-" else tokenizer.encode(symbol)[0]] = 1.0
    return np.log(probs / probs.sum(axis=1, keepdims=True))


def test_words_get_the_frames_of_their_characters() -> None:
    tok = CharTokenizer()
    path = list("--hh-i---- --yo--o---")  # "hi yo" then trailing blanks; 0.04 s per frame
    lp = _posteriors(tok, path, 30)
    text = decode_ctc(lp, tok)
    assert text == "hi yoo"
    words = word_timestamps(lp, text, tok, seconds_per_frame=0.04, offset=1.0)
    assert [w["word"] for w in words] == ["hi", "yoo"]
    assert words[0] == {"word": "hi", "start": pytest.approx(1.08), "end": pytest.approx(1.24)}  # frames 2-5
    assert words[1]["start"] == pytest.approx(1.0 + 13 * 0.04) and words[1]["end"] == pytest.approx(1.0 + 18 * 0.04)
    times = [t for w in words for t in (w["start"], w["end"])]
    assert times == sorted(times) and times[0] >= 1.0 and times[-1] <= 1.0 + 30 * 0.04  # ordered, inside


def test_nothing_to_align_gives_no_words() -> None:
    tok = CharTokenizer()
    lp = _posteriors(tok, list("----"), 4)
    assert word_timestamps(lp, "", tok, 0.04) == []
    assert word_timestamps(lp, "a long text", tok, 0.04) == []  # more tokens than frames: CTC cannot align it
