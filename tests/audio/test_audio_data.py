"""Manifests, audio reading (resampling, mixdown, FLAC), collate and the DataModule on user manifests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from trident_audio.data import SpeechDataModule, SpeechDataset, collate_speech, read_manifest
from trident_audio.text import CharTokenizer
from trident_audio.waveform import read_audio, resample


def _peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()])


def test_resampling_keeps_duration_and_pitch(tmp_path: Path, write_wav: Callable[..., Path]) -> None:
    path = write_wav(tmp_path / "a.wav", seconds=1.0, sample_rate=44100, freq=1000.0)
    wave = read_audio(path, 16000)
    assert wave.dtype == np.float32 and abs(len(wave) - 16000) <= 1
    assert abs(_peak_hz(wave, 16000) - 1000.0) < 2.0


@pytest.mark.parametrize(("orig", "new"), [(8000, 16000), (22050, 16000), (44100, 16000), (48000, 16000),
                                            (16000, 8000), (11025, 16000)])
def test_numpy_resampler_equals_torchaudio(orig: int, new: int) -> None:
    """The numpy port (the serving path imports no torch) resamples as torchaudio's ``Resample`` did for training."""
    import torch
    import torchaudio

    wave = (0.3 * np.random.default_rng(orig).standard_normal(orig * 2 + 7)).astype(np.float32)
    want = torchaudio.transforms.Resample(orig, new)(torch.from_numpy(wave)).numpy()
    got = resample(wave, orig, new)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(got - want).max() < 1e-6


def test_stereo_flac_is_mixed_down(tmp_path: Path, write_wav: Callable[..., Path]) -> None:
    path = write_wav(tmp_path / "a.flac", seconds=0.5, sample_rate=8000, channels=2, fmt="FLAC")
    wave = read_audio(path, 16000)
    assert wave.ndim == 1 and abs(len(wave) - 8000) <= 1
    assert 0.2 < np.abs(wave).max() < 0.4  # mean of two identical channels, not their sum


def test_manifest_resolves_relative_paths_and_normalises(
    tmp_path: Path, write_wav: Callable[..., Path], write_manifest: Callable[..., Path]
) -> None:
    write_wav(tmp_path / "audio" / "x.wav", seconds=0.5)
    write_wav(tmp_path / "audio" / "y.flac", seconds=0.25, sample_rate=22050, fmt="FLAC")
    manifest = write_manifest(tmp_path / "m.jsonl", [
        {"audio_filepath": "audio/x.wav", "duration": 0.5, "text": "Call me at 5!", "voice": "v1"},
        "",
        {"audio_filepath": str(tmp_path / "audio" / "y.flac"), "text": "OK."},
    ])
    utts = read_manifest(manifest, tokenizer=CharTokenizer())
    assert [u.text for u in utts] == ["call me at five", "ok"]
    assert utts[0].voice == "v1" and utts[1].voice == "unknown"
    assert utts[1].line == 3 and utts[1].duration == pytest.approx(0.25, abs=1e-3)  # from the header
    assert utts[0].tokens == tuple(CharTokenizer().encode("call me at five"))


def test_collate_pads_waves_and_targets(
    tmp_path: Path, write_wav: Callable[..., Path], write_manifest: Callable[..., Path]
) -> None:
    write_wav(tmp_path / "a.wav", seconds=0.5)
    write_wav(tmp_path / "b.wav", seconds=0.25)
    manifest = write_manifest(tmp_path / "m.jsonl", [{"audio_filepath": "a.wav", "text": "a b"},
                                                     {"audio_filepath": "b.wav", "text": "hello"}])
    dataset = SpeechDataset(read_manifest(manifest, tokenizer=CharTokenizer()), 16000)
    batch = collate_speech([dataset[0], dataset[1]])
    assert batch["waveform"].shape == (2, 8000) and batch["lengths"].tolist() == [8000, 4000]
    assert batch["targets"].shape == (2, 5) and batch["target_lengths"].tolist() == [3, 5]
    assert batch["waveform"][1, 4000:].abs().sum() == 0


def test_datamodule_filters_training_durations_and_buckets(
    tmp_path: Path, write_wav: Callable[..., Path], write_manifest: Callable[..., Path]
) -> None:
    rows = []
    for i, seconds in enumerate([0.2, 0.4, 0.6, 0.8, 1.0, 3.0]):
        write_wav(tmp_path / f"{i}.wav", seconds=seconds)
        rows.append({"audio_filepath": f"{i}.wav", "duration": seconds, "text": f"utterance {i}"})
    train = write_manifest(tmp_path / "train.jsonl", rows)
    dm = SpeechDataModule(train_manifest=str(train), val_manifest=str(train), min_duration=0.3,
                          max_duration=2.0, batch_size=2)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 4 and len(dm.datasets["val"]) == 6  # filter applies to training only
    batches = list(dm.train_dataloader())
    assert sum(len(b["text"]) for b in batches) == 4
    spreads = [max(b["lengths"]) - min(b["lengths"]) for b in batches]
    assert max(spreads) <= 3200  # bucketed: neighbours in duration share a batch
    assert dm.tokenizer_config == CharTokenizer().to_dict()


def test_default_corpus_is_built_with_held_out_sentences_and_voice(corpus: Path) -> None:
    rows = {s: [json.loads(x) for x in (corpus / f"{s}.jsonl").read_text().splitlines()] for s in
            ("train", "val", "test")}
    train_texts = {r["text"] for r in rows["train"]}
    assert not train_texts & {r["text"] for r in rows["val"] + rows["test"]}
    train_voices = {r["voice"] for r in rows["train"]}
    assert {r["voice"] for r in rows["val"] + rows["test"]} - train_voices  # an unseen voice
    assert any(ch.isdigit() for t in train_texts for ch in t)  # written form; normalised at load time
    utts = read_manifest(corpus / "train.jsonl", tokenizer=CharTokenizer())
    assert all(0.3 < u.duration < 15 for u in utts)
    wave = read_audio(utts[0].audio_path, 16000)
    assert np.abs(wave).max() > 0.01


def test_bpe_tokenizer_is_trained_on_training_texts_and_sizes_the_head(
    tmp_path: Path, write_wav: Callable[..., Path], write_manifest: Callable[..., Path]
) -> None:
    from trident_audio.model import tiny_encoder
    from trident_audio.module import SpeechModule

    write_wav(tmp_path / "a.wav", seconds=0.3)
    rows = [{"audio_filepath": "a.wav", "text": f"please check order {i} for {name}"}
            for i, name in enumerate(["anna", "ben", "carl", "dora"] * 10)]
    train = write_manifest(tmp_path / "train.jsonl", rows)
    dm = SpeechDataModule(train_manifest=str(train), val_manifest=str(train), tokenizer="bpe", bpe_vocab_size=50)
    config = dm.tokenizer_config
    assert config["kind"] == "bpe"
    module = SpeechModule(tiny_encoder(), tokenizer=config)
    assert module.head.out_features == dm.tokenizer.vocab_size
    dm.setup("fit")
    utt = dm.datasets["train"].utterances[0]
    assert dm.tokenizer.decode(utt.tokens) == utt.text == "please check order zero for anna"
