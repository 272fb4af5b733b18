"""Waveform augmentation that moves clean or synthetic speech toward telephone calls (torchaudio, seeded).

Each transform is a plain function of a mono waveform and explicit parameters (testable on its own);
:class:`Augmentation` draws the parameters from a generator seeded by ``(seed, epoch, utterance index)`` only, so
an utterance is augmented identically in a run resumed at that epoch and differently in every other epoch.
The chain follows a call: speed, room, background noise, level, the telephone band, the G.711 codec.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torchaudio.functional as F
from torch import Tensor

from trident_core.errors import ConfigError

CODECS = ("mu-law", "a-law")
A_LAW = 87.6  # G.711 A-law compression parameter


def speed_perturb(wave: Tensor, sample_rate: int, factor: float) -> Tensor:
    """Play ``wave`` ``factor`` times faster (pitch and tempo, as Kaldi's speed perturbation): length / factor."""
    if factor == 1.0:
        return wave
    out, _ = F.speed(wave.unsqueeze(0), sample_rate, factor)
    return out[0]


def add_noise(wave: Tensor, snr_db: float, generator: torch.Generator) -> Tensor:
    """Add white Gaussian noise scaled so that signal power / noise power is ``snr_db`` dB."""
    noise = torch.randn(wave.shape, generator=generator, dtype=wave.dtype)
    return F.add_noise(wave.unsqueeze(0), noise.unsqueeze(0), torch.tensor([snr_db], dtype=wave.dtype))[0]


def room_impulse_response(sample_rate: int, rt60: float, generator: torch.Generator) -> Tensor:
    """A synthetic room: a direct path, then Gaussian reflections decaying 60 dB over ``rt60`` seconds (unit norm)."""
    t = torch.arange(max(2, int(rt60 * sample_rate))) / sample_rate
    ir = torch.randn(t.shape, generator=generator) * torch.exp(-math.log(1000.0) * t / rt60)  # -60 dB at rt60
    ir[0] = 1.0
    return ir / ir.norm()


def reverberate(wave: Tensor, sample_rate: int, rt60: float, generator: torch.Generator) -> Tensor:
    """Convolve with :func:`room_impulse_response` (the tail past the end is cut) at the input's RMS level."""
    wet = F.fftconvolve(wave, room_impulse_response(sample_rate, rt60, generator).to(wave.dtype))[: len(wave)]
    return wet * (wave.pow(2).mean().sqrt() / wet.pow(2).mean().sqrt().clamp_min(1e-8))


def band_limit(wave: Tensor, sample_rate: int, low: float = 300.0, high: float = 3400.0) -> Tensor:
    """The telephone band: two high-pass biquads at ``low`` and four cascaded low-pass biquads at ``high`` (about
    48 dB/octave above it, where one biquad's 12 dB/octave would leave much of the wide-band energy)."""
    out = wave
    for _ in range(2):
        out = F.highpass_biquad(out, sample_rate, low)
    if high < sample_rate / 2:
        for _ in range(4):
            out = F.lowpass_biquad(out, sample_rate, high)
    return out


def mu_law(wave: Tensor) -> Tensor:
    """G.711 mu-law round trip (8-bit companding, mu = 255) with torchaudio's encoder and decoder."""
    return F.mu_law_decoding(F.mu_law_encoding(wave.clamp(-1.0, 1.0), 256), 256)


def a_law(wave: Tensor) -> Tensor:
    """G.711 A-law round trip (A = 87.6, 256 levels); torchaudio has no A-law without FFmpeg."""
    x = wave.clamp(-1.0, 1.0)
    small = x.abs() < 1 / A_LAW
    y = torch.where(small, A_LAW * x.abs(), 1 + torch.log((A_LAW * x.abs()).clamp_min(1.0))) / (1 + math.log(A_LAW))
    q = torch.round(y * 127.5 - 0.5).clamp(0, 127)  # 128 magnitude levels per sign: 256 codes
    y = (q + 0.5) / 127.5
    mag = torch.where(y * (1 + math.log(A_LAW)) < 1, y * (1 + math.log(A_LAW)) / A_LAW,
                      torch.exp(y * (1 + math.log(A_LAW)) - 1) / A_LAW)
    return torch.sign(x) * mag


class Augmentation:
    """Telephone-style augmentation of training waveforms, each transform on with its own probability.

    Args:
        speeds: Speed factors drawn uniformly (Kaldi's ``0.9, 1.0, 1.1``); ``[1.0]`` disables it.
        noise_prob: Probability of additive white noise.
        snr_db: Range of its signal-to-noise ratio (dB), drawn uniformly.
        reverb_prob: Probability of synthetic room reverberation.
        rt60: Range of the room's reverberation time (seconds).
        gain_db: Range of a random gain (dB); ``(0, 0)`` disables it.
        band_limit_prob: Probability of band-limiting to ``band`` (Hz).
        band: The telephone band ``(low, high)`` in Hz.
        codec_prob: Probability of a G.711 codec round trip.
        codecs: Codecs drawn from: ``"mu-law"``, ``"a-law"``.
    """

    def __init__(
        self,
        speeds: list[float] | None = None,
        noise_prob: float = 0.0,
        snr_db: tuple[float, float] = (5.0, 30.0),
        reverb_prob: float = 0.0,
        rt60: tuple[float, float] = (0.2, 0.7),
        gain_db: tuple[float, float] = (0.0, 0.0),
        band_limit_prob: float = 0.0,
        band: tuple[float, float] = (300.0, 3400.0),
        codec_prob: float = 0.0,
        codecs: list[str] | None = None,
    ) -> None:
        self.speeds = list(speeds or [1.0])
        self.codecs = list(codecs or CODECS)
        for name, p in (("noise_prob", noise_prob), ("reverb_prob", reverb_prob),
                        ("band_limit_prob", band_limit_prob), ("codec_prob", codec_prob)):
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"data.augment.{name} must be within [0, 1], got {p}")
        if any(not 0.5 <= s <= 2.0 for s in self.speeds):
            raise ConfigError(f"data.augment.speeds must lie within [0.5, 2], got {self.speeds}")
        if unknown := set(self.codecs) - set(CODECS):
            raise ConfigError(f"data.augment.codecs: unknown {sorted(unknown)}; use {list(CODECS)}")
        for name, (lo, hi) in (("snr_db", snr_db), ("rt60", rt60), ("gain_db", gain_db), ("band", band)):
            if not lo <= hi:
                raise ConfigError(f"data.augment.{name} must be (low, high) with low <= high, got {(lo, hi)}")
        if rt60[0] <= 0 or band[0] <= 0:
            raise ConfigError("data.augment.rt60 and data.augment.band must be positive")
        self.noise_prob, self.snr_db = noise_prob, tuple(snr_db)
        self.reverb_prob, self.rt60 = reverb_prob, tuple(rt60)
        self.gain_db = tuple(gain_db)
        self.band_limit_prob, self.band = band_limit_prob, tuple(band)
        self.codec_prob = codec_prob

    @staticmethod
    def generator(seed: int, epoch: int, index: int) -> torch.Generator:
        """The generator of one utterance in one epoch: a function of ``(seed, epoch, index)`` and nothing else."""
        state = np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0]
        return torch.Generator().manual_seed(int(state))

    def __call__(self, wave: Tensor, sample_rate: int, *, seed: int, epoch: int, index: int) -> Tensor:
        """Augment one mono float32 waveform (CPU); the same ``(seed, epoch, index)`` gives the same output."""
        g = self.generator(seed, epoch, index)
        # every draw is made whether or not its transform applies, so one setting never shifts another's randomness
        u = torch.rand(10, generator=g, dtype=torch.float64).tolist()
        out = speed_perturb(wave, sample_rate, self.speeds[min(int(u[0] * len(self.speeds)), len(self.speeds) - 1)])
        if u[1] < self.reverb_prob:
            out = reverberate(out, sample_rate, _between(self.rt60, u[2]), g)
        if u[3] < self.noise_prob:
            out = add_noise(out, _between(self.snr_db, u[4]), g)
        if self.gain_db != (0.0, 0.0):
            out = F.gain(out, _between(self.gain_db, u[5]))
        if u[6] < self.band_limit_prob:
            out = band_limit(out, sample_rate, *self.band)
        if u[7] < self.codec_prob:
            codec = self.codecs[min(int(u[8] * len(self.codecs)), len(self.codecs) - 1)]
            out = mu_law(out) if codec == "mu-law" else a_law(out)
        return out.clamp(-1.0, 1.0).contiguous()


def _between(bounds: tuple[float, ...], u: float) -> float:
    return bounds[0] + (bounds[1] - bounds[0]) * u
