"""The real-speech check (issue 14): Debian's pocketsphinx-testdata as a NeMo manifest, scored with `infer`.

The package is required (CI installs it, `.ci/run`): without it these tests fail naming the apt command."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import soundfile as sf

from trident_audio.export import list_inputs
from trident_audio.module import SpeechModule
from trident_audio.text import TextNormalizer
from trident_core.errors import DataError

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, which holds benchmarks/
from benchmarks.audio_real_speech import APT, DATA, build_manifest, score, split_infer_options


@pytest.fixture
def data() -> Path:
    if not (DATA / "cards").is_dir():
        pytest.fail(f"{DATA} is missing: install Debian's pocketsphinx-testdata ({APT}); .ci/run does")
    return DATA


def test_the_manifest_holds_the_ten_transcribed_utterances_of_the_package(data: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in build_manifest(tmp_path / "m.jsonl", data).read_text().splitlines()]
    assert len(rows) == 10
    assert [r["text"] for r in rows[:2]] == ["ten of clubs", "four queen of clubs"]
    assert rows[5]["text"].startswith("and mister john dashwood had then leisure to consider")
    for row in rows:
        info = sf.info(row["audio_filepath"])
        assert info.samplerate == 16000 and abs(info.duration - row["duration"]) < 1e-3
        assert row["text"] == TextNormalizer()(row["text"]) and "<s>" not in row["text"] and row["text"]
    assert 34.0 < sum(r["duration"] for r in rows) < 35.0
    assert [i.path for i in list_inputs(tmp_path / "m.jsonl", 16000)] == [Path(r["audio_filepath"]) for r in rows]


def test_a_transcription_line_without_its_wav_names_the_file_and_line(data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    for name in ("cards", "librivox"):
        shutil.copytree(data / name, copy / name)
    (copy / "cards" / "003.wav").unlink()
    with pytest.raises(DataError, match=r"cards\.transcription:3: utterance '003' has no WAV file"):
        build_manifest(tmp_path / "m.jsonl", copy)
    with pytest.raises(DataError, match=r"not found: install Debian's pocketsphinx-testdata \(sudo apt-get"):
        build_manifest(tmp_path / "m.jsonl", tmp_path / "nothing")


def test_scoring_an_artifact_gives_a_row_per_utterance_and_a_total(
    data: Path, exported: tuple[SpeechModule, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = build_manifest(tmp_path / "m.jsonl", data)
    table = score(exported[1], manifest, tmp_path / "out.jsonl", ["--decoder", "greedy"])
    assert capsys.readouterr().out.startswith(f"uv run trident-audio infer --artifact {exported[1]} --input ")
    assert len(table) == 11 and table[-1]["utterance"] == "total" and table[-1]["words"] == 92
    assert {r["decoder"] for r in table[:-1]} == {"greedy"}
    assert all(r["wer"] >= 0 and r["cer"] >= 0 for r in table)  # an untrained model: only the shape is known


def test_infer_options_after_the_double_dash_reach_infer() -> None:
    """The documented `... ARTIFACT -- --decoder greedy` (argparse alone rejected it: an empty `nargs="*"`
    positional swallowed nothing and left `--decoder greedy` unrecognised)."""
    assert split_infer_options(["art", "--out", "o", "--", "--decoder", "greedy"]) == (
        ["art", "--out", "o"], ["--decoder", "greedy"])
    assert split_infer_options(["art"]) == (["art"], [])
