"""Audio reading (soundfile), mono mixdown and resampling, in numpy only.

``torchaudio.load`` needs TorchCodec and FFmpeg since torchaudio 2.9, so files are read with soundfile
(WAV, FLAC, OGG, ...). Resampling is torchaudio's band-limited sinc interpolation (Hann window, 6 zero crossings,
rolloff 0.99: ``torchaudio.transforms.Resample``'s defaults) ported to numpy, so training, ``infer`` and
``trident serve`` resample by one rule and the serving path imports no torch (tests compare it with torchaudio).
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99


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


MAX_UPSAMPLING = 2  # 8 kHz calls into a 16 kHz model: yes; 4 kHz into 16 kHz: refused
MAX_KERNEL = 4_000_000  # elements of the sinc kernel (16 MB), (new / gcd) x (orig / gcd + 2 x width)


def check_rate(rate: int, target: int) -> None:
    """Refuse a file rate the model cannot take (the rule of the README, "Data").

    Raises:
        AudioReadError: when ``rate`` is below ``target / MAX_UPSAMPLING`` (more than half the band the model's
            features cover would be empty), or so oddly related to ``target`` that the exact resampling kernel
            would exceed :data:`MAX_KERNEL` elements (e.g. 44101 Hz to 16 kHz: 2.8 GB).
    """
    if rate * MAX_UPSAMPLING < target:
        raise AudioReadError(
            f"sample rate {rate} Hz is below {target // MAX_UPSAMPLING} Hz: this model's features are built for "
            f"{target} Hz and upsampling more than {MAX_UPSAMPLING}x leaves most of their band empty; record at "
            f">= {target // MAX_UPSAMPLING} Hz or train a model at a lower data.sample_rate"
        )
    g = math.gcd(rate, target)
    orig, new = rate // g, target // g
    width = math.ceil(LOWPASS_FILTER_WIDTH * orig / (min(orig, new) * ROLLOFF))
    if new * (orig + 2 * width) > MAX_KERNEL:
        raise AudioReadError(
            f"sample rate {rate} Hz does not resample to {target} Hz with a kernel of reasonable size (ratio "
            f"{orig}:{new}); convert the file to a standard rate (8000, 16000, 22050, 32000, 44100 or 48000 Hz) first"
        )


@lru_cache(maxsize=16)
def _sinc_kernel(orig: int, new: int) -> tuple[np.ndarray, int]:
    """torchaudio's ``_get_sinc_resample_kernel`` (sinc_interp_hann) for reduced rates: ``(new, taps)`` float32
    polyphase filters and the half-width; cached so it is computed once per rate pair, not once per file."""
    base = min(orig, new) * ROLLOFF
    width = math.ceil(LOWPASS_FILTER_WIDTH * orig / base)
    idx = np.arange(-width, width + orig, dtype=np.float64)[None] / orig
    # torchaudio builds this offset in float32 before adding the float64 grid; kept for bit-for-bit agreement
    offsets = (np.arange(0, -new, -1, dtype=np.float32)[:, None] / np.float32(new)).astype(np.float64)
    t = np.clip((offsets + idx) * base, -LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH)
    window = np.cos(t * math.pi / LOWPASS_FILTER_WIDTH / 2) ** 2
    t *= math.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        kernels = np.where(t == 0, 1.0, np.sin(t) / t)
    kernels *= window * (base / orig)
    return kernels.astype(np.float32), width


def resample(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Resample mono float32 audio from ``orig_rate`` to ``new_rate`` (torchaudio's ``Resample``, in numpy)."""
    if orig_rate == new_rate:
        return samples
    gcd = math.gcd(int(orig_rate), int(new_rate))
    orig, new = int(orig_rate) // gcd, int(new_rate) // gcd
    kernels, width = _sinc_kernel(orig, new)
    length = len(samples)
    padded = np.pad(np.asarray(samples, dtype=np.float32), (width, width + orig))
    # conv1d with stride ``orig``: every ``orig``-th window of ``taps`` samples against each of the ``new`` phases
    frames = np.lib.stride_tricks.sliding_window_view(padded, kernels.shape[1])[::orig]
    out = (frames @ kernels.T).reshape(-1)
    return np.ascontiguousarray(out[: math.ceil(new * length / orig)], dtype=np.float32)


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
        AudioReadError: when the file is not decodable audio, holds no samples, has non-finite samples, or a rate
            :func:`check_rate` refuses.
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
    check_rate(int(rate), sample_rate)
    return resample(mono, int(rate), sample_rate)


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:200]
