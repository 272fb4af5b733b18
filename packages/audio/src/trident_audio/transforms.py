"""Audio reading (soundfile), mono mixdown, resampling and SpecAugment.

``torchaudio.load`` needs TorchCodec and FFmpeg since torchaudio 2.9, so files are read with soundfile
(WAV, FLAC, OGG, ...) and resampled with ``torchaudio.functional.resample``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from torch import Tensor, nn


class AudioReadError(ValueError):
    """A file cannot be decoded as audio, or holds no samples."""


def mixdown(samples: np.ndarray) -> np.ndarray:
    """Average the channels of ``(frames, channels)`` (or pass ``(frames,)`` through) to mono float32."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.ndim != 1:
        raise AudioReadError(f"expected (frames,) or (frames, channels) audio, got shape {samples.shape}")
    return samples


def resample(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Resample mono float32 audio with torchaudio's band-limited sinc interpolation."""
    if orig_rate == new_rate:
        return samples
    tensor = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    with torch.no_grad():
        return _resampler(orig_rate, new_rate)(tensor).numpy()


@lru_cache(maxsize=16)
def _resampler(orig_rate: int, new_rate: int) -> torchaudio.transforms.Resample:
    """Cached so the sinc kernel is computed once per rate pair, not once per file."""
    return torchaudio.transforms.Resample(orig_rate, new_rate)


def audio_info(path: str | Path) -> tuple[int, int]:
    """``(frames, sample_rate)`` from the file header; raises :class:`AudioReadError` when unreadable."""
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises LibsndfileError/RuntimeError/TypeError by format
        raise AudioReadError(f"cannot read audio header ({_reason(err)})") from None
    return int(info.frames), int(info.samplerate)


def read_audio(path: str | Path, sample_rate: int, start: int = 0, frames: int = -1) -> np.ndarray:
    """Read a WAV/FLAC/... file (or only ``frames`` frames from ``start``, at the file's rate) as mono float32 at
    ``sample_rate``; a segment is read by seeking, the rest of the file is not decoded.

    Raises:
        AudioReadError: when the file is not decodable audio, holds no samples, or has non-finite samples.
    """
    try:
        samples, rate = sf.read(str(path), frames=frames, start=start, dtype="float32", always_2d=True)
    except Exception as err:
        raise AudioReadError(f"cannot decode audio ({_reason(err)})") from None
    if samples.shape[0] == 0:
        raise AudioReadError("the file holds zero audio samples")
    mono = mixdown(samples)
    if not np.isfinite(mono).all():
        raise AudioReadError("the audio holds NaN or infinite samples")
    return resample(mono, int(rate), sample_rate)


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:200]


class SpecAugment(nn.Module):
    """Frequency and time masking of ``(batch, frames, n_mels)`` features (training only).

    Args:
        freq_masks: Number of frequency masks per utterance.
        freq_width: Largest frequency mask, in mel bands.
        time_masks: Number of time masks per utterance.
        time_width: Largest time mask as a fraction of the utterance's frames.
    """

    def __init__(self, freq_masks: int = 2, freq_width: int = 15, time_masks: int = 2, time_width: float = 0.05):
        super().__init__()
        self.freq_masks = freq_masks
        self.time_masks = time_masks
        self.freq = torchaudio.transforms.FrequencyMasking(freq_width, iid_masks=True)
        self.time_width = time_width

    def forward(self, feats: Tensor) -> Tensor:
        if not self.training:
            return feats
        x = feats.transpose(1, 2).unsqueeze(1)  # (B, 1, n_mels, frames) as torchaudio expects
        for _ in range(self.freq_masks):
            x = self.freq(x)
        width = max(1, int(self.time_width * feats.shape[1]))
        masking = torchaudio.transforms.TimeMasking(width, iid_masks=True)
        for _ in range(self.time_masks):
            x = masking(x)
        return x.squeeze(1).transpose(1, 2)
