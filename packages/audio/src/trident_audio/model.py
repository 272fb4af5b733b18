"""Plain ``nn.Module``s of the audio domain: log-mel features, convolutional subsampling, Conformer encoder.

The whole chain from waveform to CTC log-probabilities is one exportable graph: the STFT is written as a
strided convolution with a fixed Fourier basis (``torch.stft`` returns complex tensors that the ONNX
exporter does not handle), the mel filterbank comes from ``torchaudio.functional.melscale_fbanks`` and the
encoder reuses the layers of ``torchaudio.models.Conformer`` with a padding mask built without
data-dependent shapes (torchaudio's own mask calls ``lengths.max().item()``, which ``torch.export`` rejects).
"""

from __future__ import annotations

import math

import torch
import torchaudio
from torch import Tensor, nn


class LogMelFeatures(nn.Module):
    """Waveform ``(batch, samples)`` to per-utterance normalised log-mel features ``(batch, frames, n_mels)``.

    Args:
        sample_rate: Expected sample rate of the waveform.
        n_fft: FFT size (and Hann window length) in samples.
        hop_length: Hop between frames in samples.
        n_mels: Mel bands.
        f_min: Lowest mel frequency in Hz.
        f_max: Highest mel frequency in Hz; ``None`` means Nyquist.
    """

    basis: Tensor  # buffers registered in __init__ (typed for mypy, which sees `Tensor | Module`)
    fbank: Tensor

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 400,
        hop_length: int = 160,
        n_mels: int = 80,
        f_min: float = 0.0,
        f_max: float | None = None,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        bins = n_fft // 2 + 1
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        t = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(bins, dtype=torch.float64)
        angle = 2 * math.pi * k[:, None] * t[None, :] / n_fft
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # (2*bins, n_fft)
        self.register_buffer("basis", basis.float().unsqueeze(1), persistent=False)
        fbank = torchaudio.functional.melscale_fbanks(
            bins, f_min, f_max if f_max is not None else sample_rate / 2, n_mels, sample_rate, norm="slaney",
            mel_scale="slaney",
        )
        self.register_buffer("fbank", fbank.float(), persistent=False)

    def frames(self, lengths: Tensor) -> Tensor:
        """Number of valid frames for waveforms of ``lengths`` samples."""
        return torch.div(lengths, self.hop_length, rounding_mode="floor") + 1

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        half = self.n_fft // 2
        x = nn.functional.pad(waveform.unsqueeze(1), (half, half))
        spec = nn.functional.conv1d(x, self.basis, stride=self.hop_length)  # (B, 2*bins, frames)
        real, imag = spec.chunk(2, dim=1)
        power = (real * real + imag * imag).transpose(1, 2)  # (B, frames, bins)
        feats = torch.log(power @ self.fbank + 1e-6)
        frame_lengths = self.frames(lengths)
        mask = (torch.arange(feats.shape[1], device=feats.device)[None, :] < frame_lengths[:, None]).unsqueeze(-1)
        count = frame_lengths.clamp(min=1).to(feats.dtype)[:, None, None]
        mean = (feats * mask).sum(1, keepdim=True) / count
        var = (((feats - mean) * mask) ** 2).sum(1, keepdim=True) / count
        feats = (feats - mean) / torch.sqrt(var + 1e-5)
        return feats * mask, frame_lengths


class ConvSubsampling(nn.Module):
    """Two stride-2 3x3 convolutions over (time, mel): 4x fewer frames, projected to ``d_model``."""

    def __init__(self, n_mels: int, d_model: int, channels: int = 64) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        freq = (n_mels + 1) // 2
        freq = (freq + 1) // 2
        self.proj = nn.Linear(channels * freq, d_model)

    @staticmethod
    def output_lengths(lengths: Tensor) -> Tensor:
        for _ in range(2):
            lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
        return lengths

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x = feats.unsqueeze(1)
        for i in range(0, len(self.conv), 2):
            x = self.conv[i + 1](self.conv[i](x))
            lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
            # zero the padded frames so a batch neighbour's length never changes an utterance's result
            valid = torch.arange(x.shape[2], device=x.device)[None, :] < lengths[:, None]
            x = x * valid[:, None, :, None]
        x = x.transpose(1, 2).flatten(2)  # (B, T/4, C * F/4)
        return self.proj(x), lengths


class ConformerEncoder(nn.Module):
    """Log-mel features, 4x convolutional subsampling and a ``torchaudio.models.Conformer``.

    The CTC head lives in :class:`CTCModel` (built by the LightningModule, which knows the vocabulary).

    Args:
        sample_rate: Sample rate of the input waveform.
        n_mels: Mel bands of the features.
        d_model: Width of the Conformer.
        num_heads: Attention heads.
        ffn_dim: Hidden width of the feed-forward blocks.
        num_layers: Conformer layers.
        kernel_size: Depthwise convolution kernel (odd).
        dropout: Dropout inside the Conformer.
        subsampling_channels: Channels of the subsampling convolutions.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 80,
        d_model: int = 144,
        num_heads: int = 4,
        ffn_dim: int = 576,
        num_layers: int = 4,
        kernel_size: int = 15,
        dropout: float = 0.1,
        subsampling_channels: int = 64,
    ) -> None:
        super().__init__()
        # 25 ms windows every 10 ms at any rate (400/160 samples at 16 kHz, 200/80 at 8 kHz): the frame rate, and so
        # the CTC frames per character, stays the same for telephone audio
        self.features = LogMelFeatures(sample_rate=sample_rate, n_fft=round(0.025 * sample_rate),
                                       hop_length=sample_rate // 100, n_mels=n_mels)
        self.subsampling = ConvSubsampling(n_mels, d_model, subsampling_channels)
        self.dropout = nn.Dropout(dropout)
        self.conformer = torchaudio.models.Conformer(
            input_dim=d_model, num_heads=num_heads, ffn_dim=ffn_dim, num_layers=num_layers,
            depthwise_conv_kernel_size=kernel_size, dropout=dropout,
        )
        self.output_dim = d_model
        self.sample_rate = sample_rate

    def encode(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Encode features ``(batch, frames, n_mels)``; returns ``(batch, frames / 4, d_model)`` and lengths."""
        x, lengths = self.subsampling(feats, lengths)
        x = self.dropout(x)
        padding = torch.arange(x.shape[1], device=x.device)[None, :] >= lengths[:, None]
        x = x.transpose(0, 1).contiguous()  # keeps torch.export from guarding on strides of a transposed view
        for layer in self.conformer.conformer_layers:
            x = layer(x, padding)
        return x.transpose(0, 1), lengths

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        return self.encode(*self.features(waveform, lengths))


class CTCModel(nn.Module):
    """Encoder plus linear CTC head: ``(waveform, lengths) -> (log_probs (B, T, V), output_lengths)``."""

    def __init__(self, encoder: ConformerEncoder, vocab_size: int | None = None, head: nn.Linear | None = None):
        super().__init__()
        if head is None and vocab_size is None:
            raise ValueError("pass vocab_size (a new head) or head (a trained one)")
        self.encoder = encoder
        self.head = head if head is not None else nn.Linear(encoder.output_dim, int(vocab_size))  # type: ignore[arg-type]

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x, out_lengths = self.encoder(waveform, lengths)
        return self.head(x).log_softmax(-1), out_lengths


def tiny_encoder(sample_rate: int = 16000) -> ConformerEncoder:
    """A Conformer small enough for CPU unit tests (about 60k parameters)."""
    return ConformerEncoder(
        sample_rate=sample_rate, n_mels=40, d_model=48, num_heads=2, ffn_dim=96, num_layers=1, kernel_size=7,
        dropout=0.0, subsampling_channels=16,
    )


def tiny_ctc_model(vocab_size: int = 29) -> CTCModel:
    """:func:`tiny_encoder` with a CTC head, for export and decoding tests."""
    return CTCModel(tiny_encoder(), vocab_size)
