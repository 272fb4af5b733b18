"""CTC greedy and prefix beam search on hand-made log-probabilities, with and without a word LM."""

from __future__ import annotations

import numpy as np

from trident_audio.arpa import ArpaLM
from trident_audio.decoding import WordNgramLM, greedy_decode, prefix_beam_search

TOKENS = ["<blank>", " ", "a", "b"]


def _lp(rows: list[list[float]]) -> np.ndarray:
    probs = np.asarray(rows, dtype=np.float64)
    return np.log(probs / probs.sum(axis=1, keepdims=True))


def test_greedy_merges_repeats_and_drops_blanks() -> None:
    lp = _lp([[0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.7, 0.1], [0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1],
              [0.1, 0.1, 0.1, 0.7]])
    assert greedy_decode(lp) == [2, 2, 3]  # "a a" merged, blank separates the second "a"
    assert greedy_decode(lp, length=2) == [2]


def test_beam_search_sums_paths_where_greedy_picks_one() -> None:
    # Best single path is blank-blank (p=0.36), but "a" collects a+a, a+blank, blank+a (p=0.64 total).
    lp = _lp([[0.6, 0.0001, 0.4, 0.0001], [0.6, 0.0001, 0.4, 0.0001]])
    assert greedy_decode(lp) == []
    assert prefix_beam_search(lp, TOKENS, beam_size=4) == [2]


def test_beam_search_matches_greedy_on_peaked_scores() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 4, size=40)
    lp = np.full((40, 4), -20.0)
    lp[np.arange(40), ids] = 0.0
    assert prefix_beam_search(lp, TOKENS, beam_size=4) == greedy_decode(lp)


def test_word_lm_prefers_seen_words_and_round_trips() -> None:
    lm = WordNgramLM.train(["ab ab", "ab ba", "ab ab ab"], order=2)
    assert lm.score(["ab"], "ab") > lm.score(["ab"], "ba") > lm.score(["ab"], "bb")
    again = WordNgramLM.from_dict(lm.to_dict())
    assert again.score([], "ab") == lm.score([], "ab")


def test_lm_changes_an_ambiguous_word() -> None:
    # acoustics slightly prefer "bb", the LM only knows "ab"
    frames = [[0.05, 0.05, 0.45, 0.45], [0.9, 0.03, 0.03, 0.04], [0.05, 0.05, 0.05, 0.85]]
    lp = _lp(frames)
    lp[0, 3] += 0.1
    plain = prefix_beam_search(lp, TOKENS, beam_size=8)
    with_lm = prefix_beam_search(lp, TOKENS, beam_size=8, lm=WordNgramLM.train(["ab", "ab ab"]), lm_weight=1.0)
    assert plain == [3, 3] and with_lm == [2, 3]


def test_lm_scores_the_end_of_the_sentence() -> None:
    # acoustics slightly prefer "bb"; the LM gives both words the same probability, but only "ab" ends sentences
    lp = _lp([[0.05, 0.05, 0.4, 0.5], [0.9, 0.03, 0.03, 0.04], [0.05, 0.05, 0.05, 0.85]])
    lm = ArpaLM([
        {("<s>",): (-99.0, 0.0), ("ab",): (-1.0, 0.0), ("bb",): (-1.0, 0.0), ("</s>",): (-1.0, 0.0)},
        {("<s>", "ab"): (-0.5, 0.0), ("<s>", "bb"): (-0.5, 0.0), ("ab", "</s>"): (-0.01, 0.0),
         ("bb", "</s>"): (-3.0, 0.0)},
    ])
    assert prefix_beam_search(lp, TOKENS, beam_size=8) == [3, 3]
    assert prefix_beam_search(lp, TOKENS, beam_size=8, lm=lm, lm_weight=1.0) == [2, 3]
