"""ARPA n-gram language models (the text format SRILM, KenLM's ``lmplz`` and NeMo write), for the beam search.

:class:`ArpaLM` scores like :class:`~trident_audio.decoding.WordNgramLM` (``score(context, word)``, natural log)
so the beam search takes either; it travels in checkpoints and artifacts as plain data (:meth:`ArpaLM.to_dict`).
A file that does not parse is a :class:`~trident_core.errors.DataError` naming the file and the line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trident_audio.decoding import WordNgramLM
from trident_core.errors import DataError

LN10 = math.log(10.0)
UNK_LOG10 = -10.0  # an unknown word when the model has no <unk> entry: penalised, never impossible


class ArpaLM:
    """A back-off n-gram model read from an ARPA file.

    Args:
        ngrams: Per order (index 0: unigrams), ``{words: (log10 prob, log10 back-off)}``.
    """

    kind = "arpa"
    BOS = "<s>"
    EOS = "</s>"

    def __init__(self, ngrams: list[dict[tuple[str, ...], tuple[float, float]]]) -> None:
        self.ngrams = ngrams
        self.order = len(ngrams)
        unk = ngrams[0].get(("<unk>",)) if ngrams else None
        self.unk_log10 = unk[0] if unk else UNK_LOG10
        self._cache: dict[tuple[tuple[str, ...], str], float] = {}

    @property
    def vocabulary_size(self) -> int:
        return len(self.ngrams[0])

    def _log10(self, context: tuple[str, ...], word: str) -> float:
        if not context:
            entry = self.ngrams[0].get((word,))
            return entry[0] if entry else self.unk_log10
        entry = self.ngrams[len(context)].get((*context, word))
        if entry is not None:
            return entry[0]
        history = self.ngrams[len(context) - 1].get(context)
        return (history[1] if history else 0.0) + self._log10(context[1:], word)

    def score(self, context: Sequence[str], word: str) -> float:
        """``ln P(word | context)`` with back-off; ``context`` is the previous words (``<s>`` is prepended)."""
        ctx = tuple([self.BOS, *context][-(self.order - 1) :]) if self.order > 1 else ()
        key = (ctx, word)
        if key not in self._cache:
            self._cache[key] = self._log10(ctx, word) * LN10
        return self._cache[key]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (checkpoint extras, ``lm.json`` of the artifact)."""
        tables = [[[list(k), p, b] for k, (p, b) in table.items()] for table in self.ngrams]
        return {"kind": self.kind, "ngrams": tables}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArpaLM:
        return cls([{tuple(k): (float(p), float(b)) for k, p, b in table} for table in data["ngrams"]])

    def to_arpa(self) -> str:
        """The model as ARPA text (read back by :func:`read_arpa` to the same model)."""
        lines = ["", "\\data\\", *(f"ngram {n + 1}={len(t)}" for n, t in enumerate(self.ngrams)), ""]
        for n, table in enumerate(self.ngrams):
            lines.append(f"\\{n + 1}-grams:")
            for words, (prob, backoff) in table.items():
                tail = f"\t{backoff!r}" if n + 1 < self.order else ""
                lines.append(f"{prob!r}\t{' '.join(words)}{tail}")
            lines.append("")
        return "\n".join([*lines, "\\end\\", ""])


def read_arpa(path: str | Path) -> ArpaLM:
    """Parse an ARPA file.

    Raises:
        DataError: naming the file and the line: a missing file, no ``\\data\\`` header, a malformed count or
            n-gram line, n-gram counts that disagree with the header, or no ``\\end\\``.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError("ARPA language model not found (model.lm_path)", path=file)
    expected: dict[int, int] = {}
    ngrams: list[dict[tuple[str, ...], tuple[float, float]]] = []
    section = "start"
    order = 0
    with file.open(encoding="utf-8", errors="replace") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line:
                continue
            if section == "start":
                if line == "\\data\\":
                    section = "data"
                continue  # text before \data\ is allowed by the format
            if line == "\\end\\":
                section = "end"
                break
            if line.startswith("ngram ") and section == "data":
                size, _, total = line[6:].partition("=")
                if not (size.strip().isdigit() and total.strip().isdigit()):
                    raise DataError(f"malformed count line {line!r} (expected 'ngram N=COUNT')", path=file,
                                    line=number)
                expected[int(size)] = int(total)
                continue
            if line.startswith("\\") and line.endswith("-grams:"):
                order = int(line[1:].split("-")[0]) if line[1:].split("-")[0].isdigit() else -1
                if order != len(ngrams) + 1 or order not in expected:
                    raise DataError(f"unexpected section {line!r}", path=file, line=number)
                ngrams.append({})
                section = "grams"
                continue
            if section != "grams":
                raise DataError(f"unexpected line {line!r} before the first n-gram section", path=file, line=number)
            fields = line.split()
            try:
                prob = float(fields[0])
                backoff = float(fields[order + 1]) if len(fields) == order + 2 else 0.0
            except (ValueError, IndexError):
                raise DataError(f"malformed {order}-gram line {line!r} (expected 'LOG10PROB W1..W{order} "
                                "[BACKOFF]')", path=file, line=number) from None
            if len(fields) not in (order + 1, order + 2) or not math.isfinite(backoff):
                raise DataError(f"malformed {order}-gram line {line!r} (expected 'LOG10PROB W1..W{order} "
                                "[BACKOFF]')", path=file, line=number)
            ngrams[-1][tuple(fields[1 : order + 1])] = (prob, backoff)
    if section != "end":
        raise DataError("not an ARPA file: no \\data\\ header" if section == "start" else "missing \\end\\",
                        path=file)
    for n, count in expected.items():
        if n > len(ngrams) or len(ngrams[n - 1]) != count:
            found = len(ngrams[n - 1]) if n <= len(ngrams) else 0
            raise DataError(f"the header announces {count} {n}-grams, the file holds {found}", path=file)
    return ArpaLM(ngrams)


def lm_from_dict(data: dict[str, Any]) -> ArpaLM | WordNgramLM:
    """The LM a checkpoint extra or an artifact's ``lm.json`` holds: an ARPA model, or the counted word n-gram."""
    if data.get("kind") == ArpaLM.kind:
        return ArpaLM.from_dict(data)
    return WordNgramLM.from_dict(data)
