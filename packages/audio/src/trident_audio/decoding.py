"""CTC decoding on numpy log-probabilities: greedy, and prefix beam search with an optional word n-gram LM.

The beam search is written here (Hannun et al. 2014, prefix beam search): open vocabulary, for character and
BPE vocabularies alike, no extra package. ``torchaudio.models.decoder.ctc_decoder`` (flashlight-text, the optional
``flashlight`` extra) is the other backend, :mod:`trident_audio.flashlight`. Nothing here imports torch, so
inference from an artifact stays light.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

_NEG_INF = -math.inf


def _logaddexp(a: float, b: float) -> float:
    if a == _NEG_INF:
        return b
    if b == _NEG_INF:
        return a
    hi, lo = (a, b) if a > b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))


def greedy_decode(log_probs: np.ndarray, length: int | None = None, blank: int = 0) -> list[int]:
    """Best path: argmax per frame, merge repeats, drop blanks.

    Args:
        log_probs: ``(time, vocab)`` scores of one utterance.
        length: Valid frames (the rest is padding); all frames when ``None``.
        blank: Id of the CTC blank.
    """
    best = np.asarray(log_probs)[: length if length is not None else len(log_probs)].argmax(-1)
    out: list[int] = []
    previous = -1
    for token in best.tolist():
        if token != previous and token != blank:
            out.append(token)
        previous = token
    return out


class WordNgramLM:
    """Word n-gram language model with interpolated absolute discounting (Kneser-Ney-like, no continuation counts).

    Trained on the training transcripts; scores are natural-log probabilities. Unknown words get the
    probability ``unk_prob`` times the unigram back-off weight, so they are penalised but never impossible.

    Args:
        order: 1 (unigram), 2 (bigram) or 3 (trigram).
        discount: Absolute discount subtracted from every seen count.
        unk_prob: Floor probability of an unseen word.
    """

    BOS = "<s>"
    EOS = "</s>"

    def __init__(self, order: int = 2, discount: float = 0.7, unk_prob: float = 1e-4) -> None:
        if order not in (1, 2, 3):
            raise ValueError(f"order must be 1, 2 or 3, got {order}")
        self.order = order
        self.discount = discount
        self.unk_prob = unk_prob
        self.counts: list[dict[tuple[str, ...], Counter[str]]] = [defaultdict(Counter) for _ in range(order)]
        self._cache: dict[tuple[tuple[str, ...], str], float] = {}

    @classmethod
    def train(cls, sentences: Iterable[str], order: int = 2, **kwargs: Any) -> WordNgramLM:
        """Count n-grams of already normalised sentences."""
        lm = cls(order=order, **kwargs)
        for sentence in sentences:
            words = [cls.BOS] * (order - 1) + sentence.split() + [cls.EOS]
            for i in range(order - 1, len(words)):
                for n in range(order):
                    lm.counts[n][tuple(words[i - n : i])][words[i]] += 1
        return lm

    @property
    def vocabulary_size(self) -> int:
        return len(self.counts[0].get((), {}))

    def _prob(self, context: tuple[str, ...], word: str) -> float:
        unigrams = self.counts[0].get((), Counter())
        total = sum(unigrams.values())
        if total == 0:
            return self.unk_prob
        types = len(unigrams)
        p = max(unigrams.get(word, 0) - self.discount, 0) / total
        p += self.discount * types / total * self.unk_prob
        for n in range(1, len(context) + 1):
            table = self.counts[n].get(context[-n:])
            if not table:
                continue
            total = sum(table.values())
            p = max(table.get(word, 0) - self.discount, 0) / total + self.discount * len(table) / total * p
        return p

    def score(self, context: Sequence[str], word: str) -> float:
        """``log P(word | context)``; ``context`` is the list of previous words (shorter ones are padded)."""
        ctx = tuple(([self.BOS] * (self.order - 1) + list(context))[-(self.order - 1) :]) if self.order > 1 else ()
        key = (ctx, word)
        if key not in self._cache:
            self._cache[key] = math.log(self._prob(ctx, word))
        return self._cache[key]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (stored in checkpoints and artifacts)."""
        return {
            "order": self.order,
            "discount": self.discount,
            "unk_prob": self.unk_prob,
            "counts": [
                [[list(ctx), dict(counter)] for ctx, counter in table.items()] for table in self.counts
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WordNgramLM:
        lm = cls(order=data["order"], discount=data["discount"], unk_prob=data["unk_prob"])
        for n, table in enumerate(data["counts"]):
            for ctx, counter in table:
                lm.counts[n][tuple(ctx)] = Counter(counter)
        return lm


def _word_starts(tokens: Sequence[str]) -> tuple[list[bool], list[bool]]:
    """Which ids start a new word (BPE ``▁piece``) and which are a plain space (characters)."""
    is_space = [t == " " for t in tokens]
    starts = [t.startswith("\u2581") for t in tokens]
    return starts, is_space


def _text_of(prefix: tuple[int, ...], tokens: Sequence[str]) -> str:
    return "".join(tokens[i] for i in prefix).replace("\u2581", " ")


def prefix_beam_search(
    log_probs: np.ndarray,
    tokens: Sequence[str],
    *,
    length: int | None = None,
    blank: int = 0,
    beam_size: int = 8,
    lm: Any = None,  # WordNgramLM or trident_audio.arpa.ArpaLM: anything with score(context, word)
    lm_weight: float = 0.5,
    word_bonus: float = 0.0,
    token_prune: float = -10.0,
) -> list[int]:
    """CTC prefix beam search; with ``lm`` every completed word adds ``lm_weight * log P(word) + word_bonus``, and
    the final ranking adds the last word's score and ``lm_weight * log P(</s> | words)``.

    Args:
        log_probs: ``(time, vocab)`` log-probabilities of one utterance.
        tokens: Token strings by id (``" "`` is a word boundary for characters, ``"▁x"`` starts a BPE word).
        length: Valid frames; all when ``None``.
        blank: Id of the CTC blank.
        beam_size: Prefixes kept after each frame.
        lm: Optional word n-gram model.
        lm_weight: Weight of the LM log-probability.
        word_bonus: Added per completed word (counters the LM's preference for short outputs).
        token_prune: Tokens whose frame log-probability is below this are not expanded.

    Returns:
        The best token ids (blanks and repeats already removed).
    """
    lp = np.asarray(log_probs, dtype=np.float64)[: length if length is not None else len(log_probs)]
    starts, is_space = _word_starts(tokens)
    # beams: prefix -> (log p ending in blank, log p ending in non-blank, lm score of the prefix)
    beams: dict[tuple[int, ...], tuple[float, float, float]] = {(): (0.0, _NEG_INF, 0.0)}

    def word_score(prefix: tuple[int, ...]) -> float:
        """LM score of the last complete word of ``prefix`` (called when the next token ends it)."""
        if lm is None:
            return 0.0
        words = _text_of(prefix, tokens).split()
        if not words:
            return 0.0
        return lm_weight * lm.score(words[:-1], words[-1]) + word_bonus

    for frame in lp:
        candidates = [int(i) for i in np.nonzero(frame >= token_prune)[0]] or [int(frame.argmax())]
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [_NEG_INF, _NEG_INF, 0.0])
        for prefix, (pb, pnb, lm_score) in beams.items():
            total = _logaddexp(pb, pnb)
            for c in candidates:
                p = float(frame[c])
                if c == blank:
                    entry = nxt[prefix]
                    entry[0] = _logaddexp(entry[0], total + p)
                    entry[2] = lm_score
                    continue
                last = prefix[-1] if prefix else None
                extended = (*prefix, c)
                entry = nxt[extended]
                if c == last:
                    entry[1] = _logaddexp(entry[1], pb + p)  # repeat only after a blank
                    same = nxt[prefix]
                    same[1] = _logaddexp(same[1], pnb + p)
                    same[2] = lm_score
                else:
                    entry[1] = _logaddexp(entry[1], total + p)
                ends_word = (is_space[c] and last is not None and not is_space[last]) or (starts[c] and prefix)
                entry[2] = lm_score + (word_score(prefix) if ends_word else 0.0)
        ranked = sorted(nxt.items(), key=lambda kv: _logaddexp(kv[1][0], kv[1][1]) + kv[1][2], reverse=True)
        beams = {k: (v[0], v[1], v[2]) for k, v in ranked[:beam_size]}

    def final(item: tuple[tuple[int, ...], tuple[float, float, float]]) -> float:
        prefix, (pb, pnb, lm_score) = item
        tail = 0.0
        if lm is not None and prefix and not is_space[prefix[-1]]:
            tail = word_score(prefix)  # the last word, which no space or new word ended
        if lm is not None and (words := _text_of(prefix, tokens).split()):
            tail += lm_weight * lm.score(words, lm.EOS)  # and the end of the sentence after it
        return _logaddexp(pb, pnb) + lm_score + tail

    best = max(beams.items(), key=final)[0]
    return list(best)
