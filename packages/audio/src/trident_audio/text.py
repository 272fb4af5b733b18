"""Text normalisation and tokenizers (characters, or SentencePiece BPE) shared by training and inference.

The same :class:`TextNormalizer` runs on manifests, on metrics references and on nothing else: transcripts
are produced in normalised form, so what the model is scored against is exactly what it is taught.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
    "twelve": "twelfth",
}
_SYMBOLS = {"%": " percent ", "&": " and ", "+": " plus ", "@": " at ", "=": " equals ", "#": " number "}
_NUMBER = re.compile(r"(?P<cur>[$€£])?(?P<num>\d[\d,]*(?:\.\d+)?)(?P<suf>st|nd|rd|th)?\b")


def number_to_words(n: int) -> str:
    """Spell a non-negative integer in English words, e.g. ``1204 -> "one thousand two hundred four"``."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_to_words(rest))
    for value, name in _SCALES:
        if n >= value:
            if n // value >= 1000 and value == _SCALES[0][0]:
                return " ".join(number_to_words(int(d)) for d in str(n))  # absurdly large: read digits
            rest = n % value
            return number_to_words(n // value) + " " + name + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError("unreachable")


def ordinal_words(n: int) -> str:
    """Spell an ordinal, e.g. ``21 -> "twenty first"``."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _spell_number(match: re.Match[str]) -> str:
    num = match.group("num").replace(",", "")
    currency = {"$": "dollars", "€": "euros", "£": "pounds"}.get(match.group("cur") or "", "")
    if match.group("suf"):
        words = ordinal_words(int(num.split(".")[0]))
    elif currency and re.fullmatch(r"\d+\.\d\d", num):
        whole, cents = num.split(".")
        words = number_to_words(int(whole)) + f" {currency} and " + number_to_words(int(cents)) + " cents"
        currency = ""
    elif "." in num:
        whole, frac = num.split(".")
        words = number_to_words(int(whole)) + " point " + " ".join(_ONES[int(d)] for d in frac)
    else:
        words = number_to_words(int(num))
    return f" {words} {currency} " if currency else f" {words} "


class TextNormalizer:
    """Normalises a transcript: unicode to ASCII, symbols and numbers to words, case, punctuation.

    Args:
        lowercase: Fold case.
        expand_numbers: Spell digits as words (``"2nd" -> "second"``, ``"$5" -> "five dollars"``).
        remove_punctuation: Drop punctuation; apostrophes inside words (``"don't"``) are kept.
    """

    def __init__(self, lowercase: bool = True, expand_numbers: bool = True, remove_punctuation: bool = True) -> None:
        self.lowercase = lowercase
        self.expand_numbers = expand_numbers
        self.remove_punctuation = remove_punctuation

    def __call__(self, text: str) -> str:
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c))
        text = text.replace("\u2019", "'").replace("\u2018", "'")
        if self.expand_numbers:
            text = re.sub(r"(\d)([:])(\d)", r"\1 \3", text)  # 10:30 -> 10 30
            text = _NUMBER.sub(_spell_number, text)
            for symbol, word in _SYMBOLS.items():
                text = text.replace(symbol, word)
        if self.lowercase:
            text = text.lower()
        if self.remove_punctuation:
            text = re.sub(r"(?<![A-Za-z])'|'(?![A-Za-z])", " ", text)  # quotes, not apostrophes in words
            text = "".join(" " if c != "'" and unicodedata.category(c)[0] == "P" else c for c in text)
            text = re.sub(r"[/\\<>*~`^|]", " ", text)
        return " ".join(text.split())

    def to_dict(self) -> dict[str, Any]:
        return {
            "lowercase": self.lowercase,
            "expand_numbers": self.expand_numbers,
            "remove_punctuation": self.remove_punctuation,
        }


class Tokenizer(Protocol):
    """What the module, the decoders and inference need from a tokenizer."""

    normalizer: TextNormalizer
    tokens: list[str]
    blank: int

    @property
    def vocab_size(self) -> int: ...
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Sequence[int]) -> str: ...
    def to_dict(self) -> dict[str, Any]: ...


def default_characters(lowercase: bool = True) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return " '" + letters + ("" if lowercase else letters.upper())


class OutOfVocabularyError(ValueError):
    """A normalised transcript holds characters the tokenizer cannot encode."""


class CharTokenizer:
    """Character vocabulary with the CTC blank at index 0.

    Args:
        characters: The characters, in id order starting at 1; default space, apostrophe and ``a-z``.
        normalizer: Settings of the :class:`TextNormalizer` applied before encoding.
    """

    kind = "char"

    def __init__(self, characters: str | None = None, normalizer: dict[str, Any] | None = None) -> None:
        self.normalizer = TextNormalizer(**(normalizer or {}))
        chars = characters if characters is not None else default_characters(self.normalizer.lowercase)
        if len(set(chars)) != len(chars) or not chars:
            raise ValueError(f"characters must be non-empty and unique, got {chars!r}")
        self.tokens = ["<blank>", *chars]
        self.blank = 0
        self._ids = {c: i for i, c in enumerate(self.tokens) if i > 0}

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """Ids of an already normalised text; raises :class:`OutOfVocabularyError` naming bad characters."""
        bad = sorted({c for c in text if c not in self._ids})
        if bad:
            raise OutOfVocabularyError(f"characters {bad} are not in the vocabulary {''.join(self.tokens[1:])!r}")
        return [self._ids[c] for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join("".join(self.tokens[i] for i in ids if i != self.blank).split())

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "characters": "".join(self.tokens[1:]), "normalizer": self.normalizer.to_dict()}


class BpeTokenizer:
    """SentencePiece BPE pieces with the CTC blank at index 0 (piece ``i`` of the model is id ``i + 1``).

    Args:
        model: The serialised SentencePiece model (bytes, or base64 text as stored in checkpoints).
        normalizer: Settings of the :class:`TextNormalizer` applied before encoding.
    """

    kind = "bpe"

    def __init__(self, model: bytes | str, normalizer: dict[str, Any] | None = None) -> None:
        import sentencepiece as spm

        self.model = base64.b64decode(model) if isinstance(model, str) else model
        self.normalizer = TextNormalizer(**(normalizer or {}))
        self.sp = spm.SentencePieceProcessor(model_proto=self.model)
        pieces = [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]
        self.tokens = ["<blank>", *pieces]
        self.blank = 0
        self._chars = {c for p in pieces for c in p.replace("\u2581", " ") if len(p) and not p.startswith("<")}

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        bad = sorted({c for c in text if c not in self._chars and c != " "})
        if bad:
            raise OutOfVocabularyError(f"characters {bad} are not covered by the BPE model")
        return [i + 1 for i in self.sp.encode(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.sp.decode([i - 1 for i in ids if i != self.blank])

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model": base64.b64encode(self.model).decode("ascii"),
            "normalizer": self.normalizer.to_dict(),
        }


def train_bpe(texts: Iterable[str], vocab_size: int = 256, normalizer: dict[str, Any] | None = None) -> BpeTokenizer:
    """Train a SentencePiece BPE model on already normalised transcripts."""
    import io

    import sentencepiece as spm

    sentences = [t for t in texts if t]
    if not sentences:
        raise ValueError("cannot train a BPE tokenizer on zero transcripts")
    model = io.BytesIO()
    chars = sorted({c for t in sentences for c in t if c != " "})
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        character_coverage=1.0, bos_id=-1, eos_id=-1, unk_id=0, hard_vocab_limit=False,
        required_chars="".join(chars), minloglevel=2, num_threads=1, normalization_rule_name="identity",
    )
    return BpeTokenizer(model.getvalue(), normalizer)


def tokenizer_from_dict(config: dict[str, Any] | None) -> CharTokenizer | BpeTokenizer:
    """Rebuild a tokenizer from :meth:`to_dict` output (``None`` gives the default character tokenizer)."""
    config = dict(config or {"kind": "char"})
    kind = config.pop("kind", "char")
    if kind == "char":
        return CharTokenizer(**config)
    if kind == "bpe":
        return BpeTokenizer(**config)
    raise ValueError(f"unknown tokenizer kind {kind!r}; expected 'char' or 'bpe'")
