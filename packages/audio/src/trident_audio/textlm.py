"""An n-gram LM built from a text corpus (``--model.lm_text``): interpolated Kneser-Ney, stored as an ARPA model.

The corpus is one sentence per line; each line is normalised by the model's tokenizer normaliser (the rule the
transcripts went through), padded with ``<s>`` ... ``</s>`` and counted. The estimate is interpolated Kneser-Ney
with one discount per order (``D = n1 / (n1 + 2 n2)`` from the counts of counts, as ``lmplz`` computes its first
discount; no pruning), and the lower orders use continuation counts except for n-grams that start with ``<s>``
(raw counts, they cannot be extended to the left). Interpolated Kneser-Ney is exactly a back-off model whose
back-off weight of a history ``h`` is ``D * N1+(h .) / c(h)``, so the result is an :class:`~trident_audio.arpa.ArpaLM`
(the same in-memory table ``--model.lm_path`` reads, ``to_arpa()`` writes it as a file): it scores ``</s>`` and
unknown words (``<unk>`` takes the uniform share of the unigram mass) the same way, and every history's
probabilities sum to one over the vocabulary.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

from trident_audio.arpa import ArpaLM
from trident_core.errors import DataError

MAX_ORDER = 6
NO_PROB_LOG10 = -99.0  # ARPA convention for <s>, which is a history but never predicted
DEFAULT_DISCOUNT = 0.5  # when the counts of counts cannot estimate one (a tiny corpus)


def _discount(counts: Iterable[int]) -> float:
    hist = Counter(c for c in counts if c <= 2)
    n1, n2 = hist[1], hist[2]
    if n1 == 0 or n2 == 0:
        return DEFAULT_DISCOUNT
    return min(max(n1 / (n1 + 2 * n2), 0.1), 0.9)


def build_kneser_ney(sentences: Iterable[list[str]], order: int = 3) -> ArpaLM:
    """Interpolated Kneser-Ney ``order``-gram model of word lists, as a back-off :class:`ArpaLM`.

    Raises:
        ValueError: for an order outside 1..:data:`MAX_ORDER` or no words at all.
    """
    if not 1 <= order <= MAX_ORDER:
        raise ValueError(f"order must be 1..{MAX_ORDER}, got {order}")
    bos, eos = ArpaLM.BOS, ArpaLM.EOS
    adjusted: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order)]
    for words in sentences:
        if not words:
            continue
        padded = [bos, *words, eos]
        for i in range(1, len(padded)):
            gram = tuple(padded[max(0, i - order + 1) : i + 1])
            adjusted[len(gram) - 1][gram] += 1  # the longest n-gram ending here: a raw count
    if not any(adjusted):
        raise ValueError("the corpus holds no words")
    for n in range(order, 1, -1):  # lower orders: how many distinct words precede the n-gram (<s> ones stay raw)
        for gram in adjusted[n - 1]:
            adjusted[n - 2][gram[1:]] += 1  # gram[1:] never starts with <s>, so it holds no raw count
    discounts = [_discount(table.values()) for table in adjusted]

    probs: list[dict[tuple[str, ...], float]] = [{} for _ in range(order)]
    unigrams, d = adjusted[0], discounts[0]
    total = sum(unigrams.values())
    uniform = d * len(unigrams) / total / (len(unigrams) + 1)  # the freed mass, over the vocabulary and <unk>
    for gram, count in unigrams.items():
        probs[0][gram] = (count - d) / total + uniform
    probs[0][("<unk>",)] = probs[0].get(("<unk>",), 0.0) + uniform
    backoffs: list[dict[tuple[str, ...], float]] = [{} for _ in range(order)]
    for n in range(2, order + 1):
        d = discounts[n - 1]
        by_history: dict[tuple[str, ...], list[tuple[tuple[str, ...], int]]] = defaultdict(list)
        for gram, count in adjusted[n - 1].items():
            by_history[gram[:-1]].append((gram, count))
        for history, grams in by_history.items():
            denom = sum(c for _, c in grams)
            gamma = d * len(grams) / denom
            backoffs[n - 2][history] = gamma
            for gram, count in grams:  # the suffix was counted one order down, so its probability exists
                probs[n - 1][gram] = (count - d) / denom + gamma * probs[n - 2][gram[1:]]
    tables: list[dict[tuple[str, ...], tuple[float, float]]] = [{} for _ in range(order)]
    for n in range(order):
        for gram, p in probs[n].items():
            tables[n][gram] = (math.log10(p), math.log10(backoffs[n].get(gram, 1.0)))
        for history, gamma in backoffs[n].items():  # a history never predicted itself: <s>
            if history not in tables[n]:
                tables[n][history] = (NO_PROB_LOG10, math.log10(gamma))
    return ArpaLM(tables)


def read_lm_text(path: str | Path, normalize: Callable[[str], str], order: int = 3) -> ArpaLM:
    """Build :func:`build_kneser_ney` from a corpus file, one sentence per line, each line ``normalize``-d.

    Raises:
        DataError: naming the file (missing, no words) or the line (not UTF-8 text, a NUL byte: not a text file).
    """
    file = Path(path)
    if not file.is_file():
        raise DataError("text corpus not found (model.lm_text); pass a UTF-8 file, one sentence per line", path=file)
    sentences: list[list[str]] = []
    with file.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1}); "
                                "convert the corpus to UTF-8", path=file, line=number) from None
            if "\x00" in line:
                raise DataError("NUL byte: this is not a text file (model.lm_text takes one sentence per line)",
                                path=file, line=number)
            if words := normalize(line).split():
                sentences.append(words)
    if not sentences:
        raise DataError("the text corpus holds no words (model.lm_text)", path=file)
    return build_kneser_ney(sentences, order)
