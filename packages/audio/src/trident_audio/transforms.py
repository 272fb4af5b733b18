"""SpecAugment (training only). Reading and resampling audio live in :mod:`trident_audio.waveform` (numpy only,
so inference and serving import no torch)."""

from __future__ import annotations

import torchaudio
from torch import Tensor, nn


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
