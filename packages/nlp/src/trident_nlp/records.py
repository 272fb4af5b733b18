"""Labelled utterances on disk: the JSONL/CSV/TSV readers (errors name the file, the line and the key) and the
stratified split."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trident_core.data import seeded_split
from trident_core.errors import DataError

MAX_TEXT_CHARS = 100_000
_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".tsv")


@dataclass(frozen=True)
class Record:
    """One labelled utterance and where it came from (for error messages)."""

    text: str
    label: str
    path: str
    line: int


def _check_text(value: Any, path: Path, line: int, key: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"text must be a string, got {type(value).__name__}", path=path, line=line, key=key)
    if not value.strip():
        raise DataError("text is empty; remove the line or fill in the utterance", path=path, line=line, key=key)
    if len(value) > MAX_TEXT_CHARS:
        raise DataError(f"text has {len(value)} characters (limit {MAX_TEXT_CHARS})", path=path, line=line, key=key)
    return value


def _check_label(value: Any, path: Path, line: int, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DataError(f"label must be a string or an integer, got {value!r}", path=path, line=line, key=key)
    label = str(value).strip()
    if not label:
        raise DataError("label is empty", path=path, line=line, key=key)
    return label


def _read_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    lines = data.split(b"\n")
    out = []
    for number, raw in enumerate(lines, start=1):
        try:
            out.append(raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r"))
        except UnicodeDecodeError as err:
            raise DataError(
                f"not valid UTF-8 ({err.reason} at byte {err.start}); re-save the file as UTF-8",
                path=path,
                line=number,
            ) from err
    return out


def _jsonl_rows(path: Path, columns: Sequence[str]) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise DataError(
                f"not valid JSON ({err}); every line must be one JSON object", path=path, line=number
            ) from err
        if not isinstance(row, dict):
            raise DataError(f"expected a JSON object, got {type(row).__name__}", path=path, line=number)
        for column in columns:
            if column not in row:
                raise DataError(f"missing key (keys present: {sorted(row)})", path=path, line=number, key=column)
        rows.append((number, row))
    return rows


def _csv_rows(path: Path, columns: Sequence[str]) -> list[tuple[int, dict[str, Any]]]:
    lines = _read_lines(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    rows = []
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise DataError("empty file: expected a header line", path=path, line=1)
        header = [h.strip() for h in header]
        for column in columns:
            if column not in header:
                raise DataError(f"missing column (header: {header})", path=path, line=1, key=column)
        for fields in reader:
            number = reader.line_num
            if not fields or not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise DataError(f"expected {len(header)} fields, got {len(fields)}", path=path, line=number)
            rows.append((number, dict(zip(header, fields, strict=True))))
    except csv.Error as err:
        raise DataError(f"malformed CSV ({err})", path=path, line=reader.line_num) from err
    return rows


def read_records(path: str | Path, text_column: str = "text", label_column: str = "label") -> list[Record]:
    """Read labelled utterances from a JSONL or CSV/TSV file.

    Raises:
        DataError: naming the file, line and column of a missing file, an undecodable or malformed line,
            a missing column, an empty text or an invalid label, or a file without any record.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise DataError(f"unsupported file type {suffix!r}; use one of {list(_SUFFIXES)}", path=path)
    columns = (text_column, label_column)
    rows = _csv_rows(path, columns) if suffix in (".csv", ".tsv") else _jsonl_rows(path, columns)
    records = [
        Record(
            _check_text(row[text_column], path, n, text_column),
            _check_label(row[label_column], path, n, label_column),
            str(path),
            n,
        )
        for n, row in rows
    ]
    if not records:
        raise DataError("no records: the file is empty", path=path)
    return records


def stratified_split(records: Sequence[Record], fractions: Sequence[float], seed: int) -> list[list[Record]]:
    """:func:`trident_core.data.seeded_split` per label: every part gets each label's share (largest remainder),
    and a label with at least as many records as there are non-empty fractions lands in every such part, so rare
    intents are in validation and test too. Each part keeps file order.
    """
    seeded_split([], fractions, seed)  # the core's checks of the fractions
    by_label: dict[str, list[Record]] = {}
    for record in records:
        by_label.setdefault(record.label, []).append(record)
    parts: list[list[Record]] = [[] for _ in fractions]
    for label in sorted(by_label):
        shuffled = seeded_split(by_label[label], [1.0], seed)[0]
        start = 0
        for part, size in zip(parts, _part_sizes(len(shuffled), fractions), strict=True):
            part.extend(shuffled[start : start + size])
            start += size
    return [sorted(part, key=lambda r: (r.path, r.line)) for part in parts]


def _part_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Sizes of ``n`` items split by ``fractions`` (the last part takes the remainder, as in ``seeded_split``)."""
    shares = [f * n for f in fractions[:-1]]
    shares.append(n - sum(shares))
    sizes = [int(share) for share in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(shares[i] - sizes[i]), i))
    for i in by_remainder[: n - sum(sizes)]:
        sizes[i] += 1
    wanted = [i for i, f in enumerate(fractions) if f > 0 or (i == len(fractions) - 1 and shares[i] > 0)]
    if n >= len(wanted):
        for i in wanted:
            if sizes[i] == 0:
                donor = max(range(len(sizes)), key=lambda j: sizes[j])
                sizes[donor] -= 1
                sizes[i] += 1
    return sizes


def read_texts(path: str | Path, text_column: str = "text") -> list[str]:
    """Texts to classify: plain text (one per line) or JSONL with a ``text_column`` key."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    texts = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
            try:
                row = json.loads(line)
            except ValueError as err:
                raise DataError(f"not valid JSON ({err})", path=path, line=number) from err
            if not isinstance(row, dict) or text_column not in row:
                raise DataError("expected a JSON object with the text key", path=path, line=number, key=text_column)
            texts.append(_check_text(row[text_column], path, number, text_column))
        else:
            texts.append(_check_text(line, path, number, text_column))
    return texts
