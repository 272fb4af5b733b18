"""Telephone augmentation: each transform does what it says, and it replays exactly after a resume."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import torchaudio.functional as F

from trident_audio.augment import (
    Augmentation,
    a_law,
    add_noise,
    band_limit,
    mu_law,
    reverberate,
    room_impulse_response,
    speed_perturb,
)
from trident_audio.data import SpeechDataModule, collate_speech
from trident_audio.model import tiny_encoder
from trident_audio.module import SpeechModule
from trident_core.errors import ConfigError

RATE = 16000
TELEPHONY = dict(speeds=[0.9, 1.0, 1.1], noise_prob=0.5, reverb_prob=0.5, gain_db=(-12.0, 6.0), band_limit_prob=1.0,
                 codec_prob=0.8)


def _tone(freq: float, seconds: float = 1.0, amplitude: float = 0.5, rate: int = RATE) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return amplitude * torch.sin(2 * torch.pi * freq * t)


def _band_db(before: torch.Tensor, after: torch.Tensor, lo: float, hi: float) -> float:
    freqs = np.fft.rfftfreq(len(before), 1 / RATE)
    band = (freqs >= lo) & (freqs < hi)
    power = [np.abs(np.fft.rfft(x.numpy()))[band] ** 2 for x in (before, after)]
    return float(10 * np.log10(power[1].sum() / power[0].sum()))


def test_band_limit_keeps_the_telephone_band_only() -> None:
    noise = 0.2 * torch.randn(RATE, generator=torch.Generator().manual_seed(0))
    out = band_limit(noise, RATE)
    assert _band_db(noise, out, 4000, 8000) < -30  # above 3.4 kHz: gone
    assert _band_db(noise, out, 0, 150) < -25  # below 300 Hz: gone
    assert abs(_band_db(noise, out, 500, 3000)) < 2  # the speech band: kept
    single = F.lowpass_biquad(noise, RATE, 3400.0)  # control: one biquad would not pass the test above
    assert _band_db(noise, single, 4000, 8000) > -30


@pytest.mark.parametrize("codec", [mu_law, a_law], ids=["mu-law", "a-law"])
def test_g711_round_trip_error_is_bounded_and_nonzero(codec: Callable[[torch.Tensor], torch.Tensor]) -> None:
    x = _tone(300.0)
    error = codec(x) - x
    sqnr = 10 * torch.log10(x.pow(2).mean() / error.pow(2).mean())
    assert 30 < sqnr < 45  # 8-bit companding: about 38 dB on a loud tone, not lossless
    assert 1e-3 < error.abs().max() < 0.02
    quiet = _tone(300.0, amplitude=0.01)  # companding: relative error stays small on quiet signals too
    assert 10 * torch.log10(quiet.pow(2).mean() / (codec(quiet) - quiet).pow(2).mean()) > 25
    assert len(torch.unique(codec(torch.linspace(-1, 1, 20001)))) <= 256  # 8 bits


@pytest.mark.parametrize("snr", [0.0, 12.5, 30.0])
def test_noise_is_added_at_the_drawn_snr(snr: float) -> None:
    x = _tone(440.0)
    noisy = add_noise(x, snr, torch.Generator().manual_seed(1))
    measured = 10 * torch.log10(x.pow(2).sum() / (noisy - x).pow(2).sum())
    assert measured.item() == pytest.approx(snr, abs=0.01)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_length_and_pitch_by_the_factor(factor: float) -> None:
    x = _tone(300.0)
    out = speed_perturb(x, RATE, factor)
    assert abs(len(out) - RATE / factor) <= 1
    peak = np.fft.rfftfreq(len(out), 1 / RATE)[np.abs(np.fft.rfft(out.numpy())).argmax()]
    assert peak == pytest.approx(300.0 * factor, abs=2.0)
    assert speed_perturb(x, RATE, 1.0) is x


def test_reverberation_decays_60_db_over_rt60_and_keeps_the_level() -> None:
    rt60 = 0.4
    ir = room_impulse_response(RATE, rt60, torch.Generator().manual_seed(0))

    def level(a: float, b: float) -> float:
        return float(10 * torch.log10(ir[int(a * RATE) + 1 : int(b * RATE)].pow(2).mean()))

    assert level(0.0, rt60 / 4) - level(rt60 / 2, 3 * rt60 / 4) == pytest.approx(30.0, abs=5.0)  # 60 dB per rt60
    x = _tone(440.0) * (torch.arange(RATE) < RATE // 2)  # a tone that stops halfway
    wet = reverberate(x, RATE, rt60, torch.Generator().manual_seed(0))
    rms = [float(w.pow(2).mean().sqrt()) for w in (wet, x)]
    assert len(wet) == len(x) and rms[0] == pytest.approx(rms[1], rel=1e-4)
    assert wet[RATE // 2 + 800 : RATE // 2 + 1600].abs().max() > 0.01  # the room rings after the tone stopped


def test_gain_is_the_drawn_decibels() -> None:
    x = _tone(440.0, amplitude=0.1)
    out = Augmentation(gain_db=(6.0, 6.0))(x, RATE, seed=0, epoch=0, index=0)
    torch.testing.assert_close(out, x * 10 ** (6 / 20))
    assert torch.equal(Augmentation()(x, RATE, seed=0, epoch=0, index=0), x)  # all off: the identity


def test_same_seed_epoch_and_utterance_give_the_same_audio() -> None:
    x = _tone(440.0, seconds=0.5)
    augment = Augmentation(**TELEPHONY)
    outs = {(e, i): augment(x, RATE, seed=3, epoch=e, index=i) for e in range(4) for i in range(2)}
    again = augment(x, RATE, seed=3, epoch=2, index=1)
    assert torch.equal(outs[2, 1], again)
    keys = list(outs)
    for a in range(len(keys)):
        for b in range(a + 1, len(keys)):  # another epoch or utterance: other draws
            pa, pb = outs[keys[a]], outs[keys[b]]
            assert len(pa) != len(pb) or not torch.equal(pa, pb), (keys[a], keys[b])
    assert not torch.equal(augment(x, RATE, seed=4, epoch=2, index=1), again)


def test_bad_augmentation_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"data.augment.noise_prob must be within \[0, 1\]"):
        Augmentation(noise_prob=1.5)
    with pytest.raises(ConfigError, match="data.augment.codecs: unknown"):
        Augmentation(codecs=["gsm"])
    with pytest.raises(ConfigError, match="data.augment.speeds"):
        Augmentation(speeds=[3.0])


class _Recorder(L.Callback):
    """Keeps the augmented training batches the module receives, by epoch."""

    def __init__(self) -> None:
        self.seen: dict[int, list[torch.Tensor]] = {}
        self.raw: dict[int, list[torch.Tensor]] = {}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.seen.setdefault(trainer.current_epoch, []).append(batch["waveform"].clone())
        dataset = trainer.datamodule.datasets["train"]
        raw = collate_speech([dataset[i] for i in batch["index"].tolist()])["waveform"]
        self.raw.setdefault(trainer.current_epoch, []).append(raw)


def _fit(manifest: Path, max_epochs: int, ckpt_path: Path | None = None) -> tuple[_Recorder, L.Trainer]:
    dm = SpeechDataModule(train_manifest=str(manifest), val_manifest=str(manifest), batch_size=2,
                          augment=Augmentation(**TELEPHONY), seed=7)
    recorder = _Recorder()
    trainer = L.Trainer(max_epochs=max_epochs, limit_val_batches=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[recorder],
                        deterministic=True)
    trainer.fit(SpeechModule(tiny_encoder(), lm_order=0), dm, ckpt_path=ckpt_path)
    return recorder, trainer


def test_a_resumed_run_sees_exactly_the_augmented_batches_of_an_uninterrupted_one(
    tmp_path: Path, write_wav: Callable[..., Path], write_manifest: Callable[..., Path]
) -> None:
    rows = []
    for i in range(4):
        write_wav(tmp_path / f"{i}.wav", seconds=0.3 + 0.1 * i, freq=300.0 + 50 * i)
        rows.append({"audio_filepath": f"{i}.wav", "text": f"tone {'abcd'[i]}"})
    manifest = write_manifest(tmp_path / "train.jsonl", rows)
    torch.manual_seed(0)
    whole, _ = _fit(manifest, max_epochs=2)
    torch.manual_seed(0)
    first, trainer = _fit(manifest, max_epochs=1)
    trainer.save_checkpoint(tmp_path / "epoch0.ckpt")
    resumed, _ = _fit(manifest, max_epochs=2, ckpt_path=tmp_path / "epoch0.ckpt")
    assert list(resumed.seen) == [1]
    for a, b in zip(whole.seen[1], resumed.seen[1], strict=True):
        assert torch.equal(a, b)
    for a, b in zip(whole.seen[0], first.seen[0], strict=True):
        assert torch.equal(a, b)
    pairs = list(zip(whole.seen[0], whole.seen[1], strict=True))  # control: another epoch, other audio
    assert any(a.shape != b.shape or not torch.equal(a, b) for a, b in pairs)
    raw = whole.raw[0]  # control: what the module trains on is not the decoded file
    assert any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(whole.seen[0], raw, strict=True))


@pytest.mark.slow
def test_telephony_config_fits_exports_and_infers_8khz_audio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trident_audio.cli import DOMAIN, main
    from trident_core.cli import run_domain

    base = ["--trainer.default_root_dir", str(tmp_path / "run"), "--data.data_dir", str(tmp_path / "data")]
    cli = run_domain(DOMAIN, ["fit", "--config", "telephony", "--config", "debug", *base])
    assert cli is not None and isinstance(cli.datamodule.augment, Augmentation)
    assert cli.datamodule.augment.codec_prob == 0.8 and cli.datamodule.augment.band == (300.0, 3400.0)
    assert cli.model.net.sample_rate == 8000 and cli.model.net.features.hop_length == 80  # 10 ms frames at 8 kHz
    capsys.readouterr()
    main(["export", "--ckpt_path", str(tmp_path / "run" / "checkpoints" / "last.ckpt"),
          "--output", str(tmp_path / "artifact")])
    report = json.loads(capsys.readouterr().out)
    assert report["parity"]["onnx"]["max_abs_diff"] < 1e-4
    meta = json.loads((tmp_path / "artifact" / "metadata.json").read_text())["domain_metadata"]
    assert meta["sample_rate"] == meta["features"]["sample_rate"] == 8000 and meta["features"]["n_fft"] == 200
    main(["infer", "--artifact", str(tmp_path / "artifact"), "--input", str(tmp_path / "data" / "test.jsonl"),
          "--output", str(tmp_path / "out.jsonl")])
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(isinstance(r["pred_text"], str) and r["text"] for r in rows)
