"""NeMo manifest segments: ``offset``/``duration`` read only the segment, in training and in ``infer``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from trident_audio.cli import main
from trident_audio.data import SpeechDataModule, SpeechDataset
from trident_audio.export import list_inputs
from trident_audio.manifest import read_manifest
from trident_audio.text import CharTokenizer

RATE = 16000


@pytest.fixture
def recording(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 25 s recording: 0.5 s of a quiet tone, then loud noise (a segment read whole would show it)."""
    t = np.arange(RATE // 2) / RATE
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    noise = np.random.default_rng(0).uniform(-0.9, 0.9, 25 * RATE - len(tone)).astype(np.float32)
    wave = np.concatenate([tone, noise])
    path = tmp_path / "long" / "call.wav"
    path.parent.mkdir()
    sf.write(path, wave, RATE, subtype="FLOAT")
    return path, wave


def test_dataset_returns_only_the_segment(
    tmp_path: Path, recording: tuple[Path, np.ndarray], write_manifest: Callable[..., Path]
) -> None:
    _, wave = recording
    manifest = write_manifest(tmp_path / "m.jsonl", [
        {"audio_filepath": "long/call.wav", "offset": 0.0, "duration": 0.5, "text": "tone"},
        {"audio_filepath": "long/call.wav", "offset": 2.0, "duration": 1.25, "text": "noise"},
        {"audio_filepath": "long/call.wav", "duration": 0.25, "text": "no offset"},
        {"audio_filepath": "long/call.wav", "text": "whole"},
    ])
    utts = read_manifest(manifest, tokenizer=CharTokenizer())
    assert [u.duration for u in utts] == pytest.approx([0.5, 1.25, 0.25, 25.0])
    dataset = SpeechDataset(utts, RATE)
    tone = dataset[0]["waveform"].numpy()
    assert len(tone) == RATE // 2 and np.abs(tone).max() < 0.31  # the quiet tone only, none of the noise
    np.testing.assert_array_equal(dataset[1]["waveform"].numpy(), wave[2 * RATE : 2 * RATE + RATE * 5 // 4])
    assert len(dataset[2]["waveform"]) == RATE // 4  # duration without offset: from the start, NeMo's rule
    whole = dataset[3]["waveform"].numpy()  # control: the line without a segment reads the loud rest too
    assert len(whole) == 25 * RATE and np.abs(whole).max() > 0.8


def test_segments_of_a_recording_longer_than_max_duration_train(
    tmp_path: Path, recording: tuple[Path, np.ndarray], write_manifest: Callable[..., Path]
) -> None:
    rows = [{"audio_filepath": "long/call.wav", "offset": float(i), "duration": 1.0, "text": f"part {'abcd'[i]}"}
            for i in range(4)]
    manifest = write_manifest(tmp_path / "train.jsonl", [*rows, {"audio_filepath": "long/call.wav", "text": "all"}])
    dm = SpeechDataModule(train_manifest=str(manifest), val_manifest=str(manifest), max_duration=20.0, batch_size=2)
    dm.setup("fit")
    assert sorted(u.text for u in dm.datasets["train"].utterances) == ["part a", "part b", "part c", "part d"]
    batches = list(dm.train_dataloader())
    assert sorted(n for b in batches for n in b["lengths"].tolist()) == [RATE] * 4  # 1 s each, not 25 s
    assert len(dm.datasets["val"]) == 5  # control: the whole-file line exists and is only filtered by duration


def test_offset_is_counted_at_the_files_own_rate(tmp_path: Path, write_manifest: Callable[..., Path]) -> None:
    t = np.arange(8000 * 2) / 8000
    wave = np.where(t < 1.0, 0.1, 0.5).astype(np.float32) * np.sin(2 * np.pi * 200 * t).astype(np.float32)
    sf.write(tmp_path / "a8k.wav", wave, 8000, subtype="FLOAT")
    manifest = write_manifest(tmp_path / "m.jsonl", [
        {"audio_filepath": "a8k.wav", "offset": 1.0, "duration": 0.5, "text": "loud half"}])
    out = SpeechDataset(read_manifest(manifest, tokenizer=CharTokenizer()), RATE)[0]["waveform"].numpy()
    assert len(out) == RATE // 2 and 0.45 < np.abs(out[100:-100]).max() < 0.55  # second half, at 16 kHz


def test_infer_inputs_carry_the_segment_and_the_line(
    tmp_path: Path, recording: tuple[Path, np.ndarray], write_manifest: Callable[..., Path]
) -> None:
    path, _ = recording
    manifest = write_manifest(tmp_path / "m.jsonl", [
        {"audio_filepath": "long/call.wav", "offset": 1.5, "duration": 2.0, "text": "reference"},
        {"audio_filepath": "long/call.wav"},
    ])
    first, second = list_inputs(manifest)
    assert (first.path, first.start, first.frames) == (path.resolve(), int(1.5 * RATE), 2 * RATE)
    assert first.record["text"] == "reference"
    assert (second.start, second.frames) == (0, -1)


@pytest.mark.parametrize(("row", "key", "message"), [
    ({"offset": 30.0, "duration": 1.0}, "offset", r"offset 30.0s is outside the file .*call.wav \(25.000s long\)"),
    ({"offset": -1.0}, "offset", "offset -1.0s is outside the file"),
    ({"offset": 1.0, "duration": -2.0}, "duration", r"duration -2.0s .* is outside \(0, 600.0\]s"),
    ({"offset": 24.0, "duration": 3.0}, "duration", r"the segment \[24.0, 27.0\]s ends after the end of the file"),
    ({"offset": "1s"}, "offset", "offset must be a finite number of seconds, got '1s'"),
])
def test_bad_segments_exit_2_naming_file_and_line(
    tmp_path: Path, recording: tuple[Path, np.ndarray], write_manifest: Callable[..., Path],
    capsys: pytest.CaptureFixture[str], row: dict, key: str, message: str,
) -> None:
    good = {"audio_filepath": "long/call.wav", "offset": 0.0, "duration": 0.5, "text": "fine"}
    manifest = write_manifest(tmp_path / "m.jsonl", [good, {"audio_filepath": "long/call.wav", "text": "bad", **row}])
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "debug", "--trainer.default_root_dir", str(tmp_path / "run"),
              "--data.train_manifest", str(manifest), "--data.val_manifest", str(manifest)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {manifest}:2: [{key}] "), err
    assert __import__("re").search(message, err), err
