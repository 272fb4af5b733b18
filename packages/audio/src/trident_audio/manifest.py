"""NeMo-style JSONL manifests: the one rule for ``audio_filepath``, the line reader and the validated reader.

A manifest line is ``{"audio_filepath": ..., "duration": ..., "text": ...}`` (optionally ``"offset"``, and
``"voice"`` or ``"speaker"``, used for the per-voice WER table). As in NeMo, ``offset`` and ``duration`` (seconds)
select a segment of the recording, and only that segment is read (:func:`segment`). Relative paths resolve from
the manifest's folder and may not leave it (:func:`resolve_audio_path`; training data and ``infer`` inputs follow
the same rule). Every problem a user can cause is a :class:`~trident_core.errors.DataError` naming the manifest,
the line and the key.
Light: no Lightning, so inference can read manifests too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trident_audio.text import OutOfVocabularyError, TextNormalizer, Tokenizer
from trident_audio.waveform import AudioReadError, audio_info, check_rate
from trident_core.errors import DataError

MAX_LINE_CHARS = 1_000_000


@dataclass(frozen=True)
class Utterance:
    """One validated manifest line."""

    audio_path: Path
    duration: float
    text: str  # normalised transcript
    tokens: tuple[int, ...]
    voice: str
    manifest: Path
    line: int
    start: int = 0  # first frame of the segment, at the file's own rate
    frames: int = -1  # frames of the segment at the file's own rate (-1: to the end of the file)


def resolve_audio_path(value: Any, manifest: Path, line: int) -> Path:
    """Where a manifest line's ``audio_filepath`` points: absolute as written, relative from the manifest's folder.

    The one rule for training manifests (:func:`read_manifest`) and ``infer`` inputs alike.

    Raises:
        DataError: naming the manifest, the line and the key when the value is not a non-empty string, holds a
            NUL, or (relative) leaves the manifest's folder.
    """
    if not isinstance(value, str) or not value.strip():
        raise DataError("audio_filepath must be a non-empty string", path=manifest, line=line, key="audio_filepath")
    if "\x00" in value:
        raise DataError("audio_filepath holds a NUL character", path=manifest, line=line, key="audio_filepath")
    raw = Path(value)
    if raw.is_absolute():
        return raw
    folder = manifest.parent.resolve()
    resolved = (folder / raw).resolve()
    if folder not in resolved.parents:
        raise DataError(
            f"relative path {value!r} leaves the manifest's folder {folder}; use a path inside it or an absolute one",
            path=manifest, line=line, key="audio_filepath",
        )
    return resolved


def manifest_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, JSON object)`` of every non-blank line of a JSONL manifest.

    Raises:
        DataError: naming the manifest and the line: missing file, over-long line, not UTF-8, malformed JSON,
            or a line that is not a JSON object.
    """
    manifest = Path(path)
    if not manifest.is_file():
        raise DataError("manifest not found", path=manifest)
    with manifest.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if len(raw) > MAX_LINE_CHARS:
                raise DataError(f"line longer than {MAX_LINE_CHARS} bytes", path=manifest, line=number)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"not valid UTF-8 ({err.reason})", path=manifest, line=number) from None
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataError(f"malformed JSON ({err.msg} at column {err.colno})", path=manifest,
                                line=number) from None
            if not isinstance(record, dict):
                raise DataError(f"expected a JSON object, got {type(record).__name__}", path=manifest, line=number)
            yield number, record


def _parse_line(
    record: dict[str, Any], manifest: Path, line: int, normalizer: TextNormalizer, tokenizer: Tokenizer | None,
    max_audio_seconds: float, sample_rate: int | None = None,
) -> Utterance:
    for key in ("audio_filepath", "text"):
        if key not in record:
            raise DataError(f"missing required key {key!r}", path=manifest, line=line, key=key)
    audio = resolve_audio_path(record["audio_filepath"], manifest, line)
    text = record["text"]
    if not isinstance(text, str):
        raise DataError(f"text must be a string, got {type(text).__name__}", path=manifest, line=line, key="text")
    normalised = normalizer(text)
    if not normalised:
        raise DataError(f"empty transcript after normalisation ({text!r})", path=manifest, line=line, key="text")
    tokens: tuple[int, ...] = ()
    if tokenizer is not None:
        try:
            tokens = tuple(tokenizer.encode(normalised))
        except OutOfVocabularyError as err:
            raise DataError(f"{err} (normalised text {normalised!r})", path=manifest, line=line, key="text") from None
    start, frames, seconds = segment(record, audio, manifest, line, max_audio_seconds, sample_rate)
    voice = record.get("voice", record.get("speaker", "unknown"))
    return Utterance(audio, seconds, normalised, tokens, str(voice), manifest, line, start, frames)


SEGMENT_SLACK_SECONDS = 0.1  # a duration rounded up past the end of the file is clipped, not an error


def _seconds(record: dict[str, Any], key: str, manifest: Path, line: int) -> float | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DataError(f"{key} must be a finite number of seconds, got {value!r}", path=manifest, line=line, key=key)
    return float(value)


def segment(
    record: dict[str, Any], audio: Path, manifest: Path, line: int, max_audio_seconds: float = 600.0,
    sample_rate: int | None = None,
) -> tuple[int, int, float]:
    """The part of ``audio`` a manifest line names, NeMo's rule: ``offset`` seconds in, ``duration`` seconds long.

    Without ``offset`` the segment starts at 0; without ``duration`` it runs to the end of the file. A duration
    that ends at most :data:`SEGMENT_SLACK_SECONDS` after the end of the file (rounded durations) is clipped.

    Returns:
        ``(start, frames, seconds)``: first frame and frame count at the file's own rate (``frames`` is -1 for
        "to the end"), and the segment's length in seconds.

    Raises:
        DataError: naming the manifest, the line and the key: a missing or unreadable file, a non-numeric,
            negative or zero value, an offset at or past the end of the file, a segment ending after it, or one
            longer than ``max_audio_seconds``, or a file rate the model at ``sample_rate`` cannot take
            (:func:`~trident_audio.waveform.check_rate`; not checked when ``None``).
    """
    if not audio.is_file():
        raise DataError(f"audio file {audio} not found", path=manifest, line=line, key="audio_filepath")
    try:
        total, rate = audio_info(audio)
    except AudioReadError as err:
        raise DataError(f"{audio}: {err}", path=manifest, line=line, key="audio_filepath") from None
    if total <= 0 or rate <= 0:
        raise DataError(f"{audio}: zero-length audio", path=manifest, line=line, key="audio_filepath")
    if sample_rate is not None:
        try:
            check_rate(rate, sample_rate)
        except AudioReadError as err:
            raise DataError(f"{audio}: {err}", path=manifest, line=line, key="audio_filepath") from None
    file_seconds = total / rate
    offset = _seconds(record, "offset", manifest, line) or 0.0
    if offset < 0 or offset >= file_seconds:
        raise DataError(f"offset {offset}s is outside the file {audio} ({file_seconds:.3f}s long); offset is the "
                        "segment's start in seconds", path=manifest, line=line, key="offset")
    duration = _seconds(record, "duration", manifest, line)
    length = file_seconds - offset if duration is None else duration
    if length <= 0 or length > max_audio_seconds:
        raise DataError(
            f"duration {length!r}s (file: {file_seconds:.2f}s) is outside (0, {max_audio_seconds}]s; split long "
            "recordings or raise data.max_audio_seconds", path=manifest, line=line, key="duration",
        )
    if offset + length > file_seconds + SEGMENT_SLACK_SECONDS:
        raise DataError(f"the segment [{offset}, {offset + length}]s ends after the end of the file {audio} "
                        f"({file_seconds:.3f}s long)", path=manifest, line=line, key="duration")
    start = round(offset * rate)
    if duration is None and start == 0:
        return 0, -1, file_seconds
    frames = min(round(length * rate), total - start)
    if frames <= 0:
        raise DataError(f"the segment holds no samples of {audio}", path=manifest, line=line, key="duration")
    return start, frames, frames / rate


def read_manifest(
    path: str | Path,
    normalizer: TextNormalizer | None = None,
    tokenizer: Tokenizer | None = None,
    *,
    max_audio_seconds: float = 600.0,
    sample_rate: int | None = None,
) -> list[Utterance]:
    """Read and validate a JSONL manifest (every line, every audio header).

    Args:
        path: The manifest.
        normalizer: Text normalisation; the tokenizer's when ``None`` and a tokenizer is given.
        tokenizer: When given, transcripts are encoded here so out-of-vocabulary characters fail early.
        max_audio_seconds: Longer audio is an error (the duration filter of training is separate).
        sample_rate: The model's rate: a file at a rate it cannot take is an error (``None``: not checked).

    Raises:
        DataError: naming the manifest, the line and the key of the first bad line.
    """
    manifest = Path(path)
    normalizer = normalizer or (tokenizer.normalizer if tokenizer is not None else TextNormalizer())
    utterances = [_parse_line(record, manifest, number, normalizer, tokenizer, max_audio_seconds, sample_rate)
                  for number, record in manifest_records(manifest)]
    if not utterances:
        raise DataError("manifest holds no utterances", path=manifest)
    return utterances
