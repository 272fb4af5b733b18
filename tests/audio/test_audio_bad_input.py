"""Malformed inputs: each is a DataError naming the manifest (or file), the line and the key."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trident_audio.data import SpeechDataset, read_manifest
from trident_audio.export import infer, list_inputs
from trident_audio.text import CharTokenizer
from trident_core.errors import DataError, TridentError


@pytest.fixture
def good_wav(tmp_path: Path, write_wav: Callable[..., Path]) -> Path:
    return write_wav(tmp_path / "data" / "ok.wav", seconds=0.5)


def _bad_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "empty.wav": b"",
        "garbage.wav": b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 3,
        "text.wav": b"this is not audio at all\n",
        "truncated.wav": None,
        "header_only.wav": None,
    }
    out = {}
    for name, data in files.items():
        path = folder / name
        if data is not None:
            path.write_bytes(data)
        out[name] = path
    return out


BAD_LINES: list[tuple[str, object, str | None]] = [
    ("not json", "{audio_filepath: x}", None),
    ("truncated json", '{"audio_filepath": "ok.wav", "text": "hi"', None),
    ("array", "[1, 2, 3]", None),
    ("number", "42", None),
    ("missing path", {"text": "hello"}, "audio_filepath"),
    ("missing text", {"audio_filepath": "ok.wav"}, "text"),
    ("path not str", {"audio_filepath": 7, "text": "hi"}, "audio_filepath"),
    ("empty path", {"audio_filepath": "", "text": "hi"}, "audio_filepath"),
    ("nul in path", {"audio_filepath": "ok\u0000.wav", "text": "hi"}, "audio_filepath"),
    ("escapes folder", {"audio_filepath": "../../etc/passwd", "text": "hi"}, "audio_filepath"),
    ("missing file", {"audio_filepath": "nope.wav", "text": "hi"}, "audio_filepath"),
    ("text not str", {"audio_filepath": "ok.wav", "text": ["hi"]}, "text"),
    ("empty text", {"audio_filepath": "ok.wav", "text": ""}, "text"),
    ("punctuation only", {"audio_filepath": "ok.wav", "text": "?!..."}, "text"),
    ("out of vocabulary", {"audio_filepath": "ok.wav", "text": "\u4f60\u597d"}, "text"),
    ("duration string", {"audio_filepath": "ok.wav", "text": "hi", "duration": "long"}, "duration"),
    ("duration bool", {"audio_filepath": "ok.wav", "text": "hi", "duration": True}, "duration"),
    ("duration zero", {"audio_filepath": "ok.wav", "text": "hi", "duration": 0}, "duration"),
    ("duration negative", {"audio_filepath": "ok.wav", "text": "hi", "duration": -3.0}, "duration"),
    ("duration huge", {"audio_filepath": "ok.wav", "text": "hi", "duration": 1e12}, "duration"),
    ("duration nan", '{"audio_filepath": "ok.wav", "text": "hi", "duration": NaN}', "duration"),
    ("empty audio", {"audio_filepath": "bad/empty.wav", "text": "hi"}, "audio_filepath"),
    ("garbage audio", {"audio_filepath": "bad/garbage.wav", "text": "hi"}, "audio_filepath"),
    ("text as audio", {"audio_filepath": "bad/text.wav", "text": "hi"}, "audio_filepath"),
    ("header only", {"audio_filepath": "bad/header_only.wav", "text": "hi"}, "audio_filepath"),
]


def _prepare_bad_audio(folder: Path, write_wav: Callable[..., Path]) -> None:
    _bad_files(folder / "bad")
    full = write_wav(folder / "bad" / "full.wav", seconds=1.0)
    data = full.read_bytes()
    (folder / "bad" / "truncated.wav").write_bytes(data[: len(data) // 3])
    (folder / "bad" / "header_only.wav").write_bytes(data[:44])


@pytest.mark.parametrize(("case", "line", "key"), BAD_LINES, ids=[c[0] for c in BAD_LINES])
def test_bad_manifest_line_names_manifest_line_and_key(
    good_wav: Path, write_wav: Callable[..., Path], write_manifest: Callable[..., Path], case: str,
    line: object, key: str | None,
) -> None:
    folder = good_wav.parent
    _prepare_bad_audio(folder, write_wav)
    good = {"audio_filepath": "ok.wav", "text": "fine", "duration": 0.5}
    manifest = write_manifest(folder / "m.jsonl", [good, line if isinstance(line, str) else json.dumps(line)])
    with pytest.raises(DataError) as err:
        read_manifest(manifest, tokenizer=CharTokenizer(), max_audio_seconds=600)
    assert err.value.path == str(manifest) and err.value.line == 2, case
    assert err.value.key == key, (case, str(err.value))
    assert str(err.value).startswith(f"{manifest}:2: ")


def test_truncated_audio_fails_when_decoded_naming_the_line(
    good_wav: Path, write_wav: Callable[..., Path], write_manifest: Callable[..., Path]
) -> None:
    folder = good_wav.parent
    _prepare_bad_audio(folder, write_wav)
    manifest = write_manifest(folder / "m.jsonl", [{"audio_filepath": "ok.wav", "text": "fine"},
                                                   {"audio_filepath": "bad/truncated.wav", "text": "hi"}])
    try:
        utts = read_manifest(manifest, tokenizer=CharTokenizer())
    except DataError as err:  # libsndfile may reject the header already
        assert err.line == 2 and err.key == "audio_filepath"
        return
    dataset = SpeechDataset(utts, 16000)
    try:
        dataset[1]
    except DataError as err:
        assert err.line == 2 and "truncated.wav" in str(err)


def test_not_utf8_empty_and_missing_manifests(tmp_path: Path) -> None:
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"audio_filepath": "a.wav", "text": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.jsonl:1: not valid UTF-8"):
        read_manifest(latin)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="no utterances"):
        read_manifest(empty)
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path / "missing.jsonl")


def test_audio_longer_than_the_limit_is_rejected(
    tmp_path: Path, write_wav: Callable[..., Path], write_manifest: Callable[..., Path]
) -> None:
    write_wav(tmp_path / "long.wav", seconds=3.0)
    manifest = write_manifest(tmp_path / "m.jsonl", [{"audio_filepath": "long.wav", "text": "hi"}])
    with pytest.raises(DataError, match=r"m.jsonl:1: \[duration\]"):
        read_manifest(manifest, max_audio_seconds=2.0)


def test_infer_inputs_name_the_bad_file(tmp_path: Path, write_manifest: Callable[..., Path]) -> None:
    with pytest.raises(DataError, match="input not found"):
        list_inputs(tmp_path / "missing")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        list_inputs(tmp_path / "empty_dir")
    manifest = write_manifest(tmp_path / "m.jsonl", [{"text": "no path"}])
    with pytest.raises(DataError, match=r"m.jsonl:1: \[audio_filepath\]"):
        list_inputs(manifest)
    with pytest.raises(TridentError):  # not an artifact folder
        infer(str(tmp_path), str(manifest))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_fuzzed_manifest_lines_never_crash(tmp_path: Path, raw: bytes) -> None:
    manifest = tmp_path / "fuzz.jsonl"
    manifest.write_bytes(raw)
    try:
        utts = read_manifest(manifest, tokenizer=CharTokenizer())
    except DataError as err:
        assert err.path == str(manifest)
        assert err.line is not None or "no utterances" in str(err)
    else:
        pytest.fail(f"accepted {raw!r} as {utts}")


def test_bad_config_values_are_config_errors(tmp_path: Path) -> None:
    from trident_audio.data import SpeechDataModule
    from trident_audio.model import tiny_encoder
    from trident_audio.module import SpeechModule
    from trident_core.errors import ConfigError

    with pytest.raises(ConfigError, match="model.decoder"):
        SpeechModule(tiny_encoder(), decoder="viterbi")
    with pytest.raises(ConfigError, match="data.tokenizer"):
        SpeechDataModule(tokenizer="words")
    with pytest.raises(ConfigError, match="val_manifest"):
        SpeechDataModule(train_manifest=str(tmp_path / "t.jsonl"))
    with pytest.raises(ConfigError, match="min_duration"):
        SpeechDataModule(min_duration=5, max_duration=1)
