"""Sample rates a model cannot take: below half its rate, or with no small exact resampling kernel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from trident_audio.export import list_inputs
from trident_audio.manifest import read_manifest
from trident_audio.waveform import AudioReadError, check_rate, read_audio
from trident_core.errors import DataError


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000])
def test_common_rates_reach_a_16_khz_model(rate: int) -> None:
    check_rate(rate, 16000)


@pytest.mark.parametrize(("rate", "target", "message"), [
    (4000, 16000, "sample rate 4000 Hz is below 8000 Hz"),
    (7999, 16000, "sample rate 7999 Hz is below 8000 Hz"),
    (3000, 8000, "sample rate 3000 Hz is below 4000 Hz"),
    (44101, 16000, "sample rate 44101 Hz does not resample to 16000 Hz"),
    (16001, 8000, "sample rate 16001 Hz does not resample to 8000 Hz"),
])
def test_rates_a_model_cannot_take(rate: int, target: int, message: str) -> None:
    with pytest.raises(AudioReadError, match=message):
        check_rate(rate, target)


def test_reading_refuses_before_resampling(tmp_path: Path, write_wav: Callable[..., Path]) -> None:
    low = write_wav(tmp_path / "low.wav", seconds=0.2, sample_rate=4000)
    assert len(read_audio(low, 8000)) == 1600  # 2x up: taken
    with pytest.raises(AudioReadError, match="below 8000 Hz"):
        read_audio(low, 16000)


def _manifest(tmp_path: Path, write_wav: Callable[..., Path], write_manifest: Callable[..., Path]) -> Path:
    ok = write_wav(tmp_path / "ok.wav", seconds=0.5, sample_rate=16000)
    low = write_wav(tmp_path / "low.wav", seconds=0.5, sample_rate=4000)
    return write_manifest(tmp_path / "m.jsonl", [{"audio_filepath": ok.name, "text": "hello"},
                                                 {"audio_filepath": low.name, "text": "hello"}])


def test_manifests_name_the_line_for_training_and_infer(
    tmp_path: Path, write_wav: Callable[..., Path], write_manifest: Callable[..., Path]
) -> None:
    manifest = _manifest(tmp_path, write_wav, write_manifest)
    assert len(read_manifest(manifest)) == 2  # no model rate, no check
    assert len(read_manifest(manifest, sample_rate=8000)) == 2
    for read in (lambda: read_manifest(manifest, sample_rate=16000), lambda: list_inputs(manifest, 16000)):
        with pytest.raises(DataError, match="sample rate 4000 Hz is below 8000 Hz") as err:
            read()
        assert str(err.value).startswith(f"{manifest}:2: [audio_filepath] ")


@pytest.mark.slow  # 62 s on the loaded 2-core machine (CLI start-up); the rule itself is tested above
def test_fit_refuses_the_manifest_through_the_cli(
    tmp_path: Path, write_wav: Callable[..., Path], write_manifest: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from trident_audio.cli import main

    manifest = _manifest(tmp_path, write_wav, write_manifest)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "debug", "--trainer.default_root_dir", str(tmp_path / "run"),
              "--data.train_manifest", str(manifest), "--data.val_manifest", str(manifest)])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"error: {manifest}:2: [audio_filepath] {tmp_path / 'low.wav'}: sample rate 4000 Hz")
