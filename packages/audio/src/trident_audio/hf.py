"""Pretrained speech encoders from Hugging Face (wav2vec 2.0, HuBERT, WavLM, data2vec-audio) as a Trident net.

``--model.net.class_path trident_audio.hf.PretrainedEncoder --model.net.init_args.path FOLDER`` loads a folder that
``save_pretrained`` wrote (``config.json``, the weights and the feature extractor's ``preprocessor_config.json``;
a ``*ForCTC`` folder is fine) with ``from_pretrained``, offline. The folder's own CTC head, if any, is dropped: the
:class:`~trident_audio.module.SpeechModule` puts a new head sized to Trident's tokenizer on top.

The net keeps the interface of :class:`~trident_audio.model.ConformerEncoder`: ``features`` is the feature
extractor's normalisation (zero mean, unit variance over the valid samples when ``do_normalize``) followed by the
model's convolutional feature encoder, frozen by default; ``encode`` is the feature projection, the model's own
time masking while training (``mask_time_prob``, HF's SpecAugment) and the transformer. Both run inside the
exported graph, so the artifact takes raw waveforms like every speech artifact.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from trident_core.errors import ConfigError

SUPPORTED = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")
log = logging.getLogger(__name__)


class WaveformFrontEnd(nn.Module):
    """The feature extractor's settings and the model's convolutional feature encoder:
    ``(batch, samples)`` waveforms to ``(batch, frames, conv_dim)`` features and frame counts.

    Args:
        conv: The pretrained convolutional feature encoder (``model.feature_extractor``).
        sample_rate: The feature extractor's ``sampling_rate``.
        do_normalize: Normalise each utterance to zero mean and unit variance over its valid samples (as the
            feature extractor does) before the convolutions.
        kernels: Kernel sizes of the convolutions (``config.conv_kernel``).
        strides: Their strides (``config.conv_stride``).
    """

    def __init__(self, conv: nn.Module, sample_rate: int, do_normalize: bool, kernels: list[int],
                 strides: list[int]) -> None:
        super().__init__()
        self.conv = conv
        self.sample_rate = sample_rate
        self.do_normalize = do_normalize
        self.kernels = tuple(int(k) for k in kernels)
        self.strides = tuple(int(s) for s in strides)
        self.hop_length = math.prod(self.strides)  # samples per output frame (320: 20 ms at 16 kHz)

    def frames(self, lengths: Tensor) -> Tensor:
        """Valid output frames of waveforms of ``lengths`` samples (``_get_feat_extract_output_lengths``)."""
        for kernel, stride in zip(self.kernels, self.strides, strict=True):
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        return lengths.clamp(min=0)

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        valid = torch.arange(waveform.shape[1], device=waveform.device)[None, :] < lengths[:, None]
        x = waveform * valid
        if self.do_normalize:  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm, padding stays 0
            count = lengths.clamp(min=1)[:, None].to(x.dtype)
            mean = x.sum(1, keepdim=True) / count
            var = (((x - mean) * valid) ** 2).sum(1, keepdim=True) / count
            x = (x - mean) / torch.sqrt(var + 1e-7) * valid
        return self.conv(x).transpose(1, 2), self.frames(lengths)


class PretrainedEncoder(nn.Module):
    """A pretrained wav2vec 2.0 / HuBERT / WavLM / data2vec-audio encoder loaded from a local folder.

    Built from plain values, so a config names it with ``class_path`` and a checkpoint rebuilds it (the folder must
    still be there when a checkpoint is tested or exported; the weights then come from the checkpoint).

    Args:
        path: Folder written by ``save_pretrained``: ``config.json``, the weights and ``preprocessor_config.json``.
        sample_rate: Rate of the audio the data module delivers (the CLI links ``data.sample_rate`` to it); must be
            the feature extractor's ``sampling_rate``.
        freeze_feature_encoder: Keep the convolutional feature encoder's weights as pretrained (the usual recipe).
        mask_time_prob: The model's time masking while training; ``None`` keeps the folder's config value.
    """

    def __init__(self, path: str, sample_rate: int = 16000, freeze_feature_encoder: bool = True,
                 mask_time_prob: float | None = None) -> None:
        super().__init__()
        folder = Path(path).expanduser()
        extractor, config = _read_folder(folder)
        rate = int(extractor.sampling_rate)
        if rate != int(sample_rate):
            raise ConfigError(
                f"{folder / 'preprocessor_config.json'}: the pretrained encoder takes {rate} Hz audio "
                f"(sampling_rate) but data.sample_rate is {sample_rate} (linked to model.net.init_args.sample_rate); "
                f"set --data.sample_rate {rate}: audio at any other rate is resampled to it when read"
            )
        overrides = {} if mask_time_prob is None else {"mask_time_prob": float(mask_time_prob)}
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # its load report lists the folder's CTC head as unused: dropped on purpose
        try:
            model = AutoModel.from_pretrained(folder, local_files_only=True, attn_implementation="eager", **overrides)
        finally:
            hf_logging.set_verbosity(verbosity)
        log.info("pretrained %s encoder from %s (%d Hz); a new CTC head replaces any head it had",
                 config.model_type, folder, rate)
        front = WaveformFrontEnd(model.feature_extractor, rate, bool(getattr(extractor, "do_normalize", True)),
                                 list(config.conv_kernel), list(config.conv_stride))
        del model.feature_extractor  # lives in `features` now: one copy of its weights in checkpoints and exports
        if freeze_feature_encoder:
            front.requires_grad_(False)
        self.features = front
        self.model = model
        self.path = str(folder)
        self.model_type = str(config.model_type)
        self.sample_rate = rate
        self.output_dim = int(config.hidden_size)
        self._stable_layer_norm = bool(getattr(config, "do_stable_layer_norm", False))
        # from_pretrained returns eval mode, and Lightning keeps a module's mode at fit start: dropout and the
        # model's time masking would stay off during fine-tuning without this
        self.train()

    def encode(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Convolutional features ``(batch, frames, conv_dim)`` to hidden states ``(batch, frames, hidden)``."""
        mask = torch.arange(feats.shape[1], device=feats.device)[None, :] < lengths[:, None]
        hidden = self.model.feature_projection(feats)
        if isinstance(hidden, tuple):  # wav2vec2, WavLM, data2vec-audio also return the normalised features
            hidden = hidden[0]
        if self.training:  # the model's own SpecAugment (config.mask_time_prob / mask_feature_prob)
            hidden = self.model._mask_hidden_states(hidden, attention_mask=mask)
        out = self.model.encoder(hidden, attention_mask=mask)
        return out[0], lengths

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        return self.encode(*self.features(waveform, lengths))

    def layer_depths(self) -> dict[str, int]:
        """Depth of every parameter for layer-wise learning rates: front end, projection and positional
        convolution 0, transformer layer ``i`` at ``i + 1``, a final layer norm (stable-layer-norm models) on top."""
        depths: dict[str, int] = {}
        top = 0
        for name, _ in self.named_parameters():
            parts = name.split(".")
            if parts[:3] == ["model", "encoder", "layers"] and parts[3].isdigit():
                depths[name] = int(parts[3]) + 1
                top = max(top, depths[name])
            else:
                depths[name] = 0
        if self._stable_layer_norm:
            for name in depths:
                if name.startswith("model.encoder.layer_norm."):
                    depths[name] = top
        return depths


def _read_folder(folder: Path) -> tuple[Any, Any]:
    """The feature extractor and config of a ``save_pretrained`` folder, or a ConfigError naming what is missing."""
    key = "model.net.init_args.path"
    if not folder.is_dir():
        raise ConfigError(f"{key}: {folder} is not a folder; pass a folder written by save_pretrained (config.json, "
                          "the weights, preprocessor_config.json). Models are not downloaded")
    for name, fix in (("config.json", "model.save_pretrained(folder)"),
                      ("preprocessor_config.json", "Wav2Vec2FeatureExtractor(...).save_pretrained(folder)")):
        if not (folder / name).is_file():
            raise ConfigError(f"{key}: {folder} has no {name}; write it with {fix}")
    try:
        from transformers import AutoConfig, AutoFeatureExtractor
    except ImportError as err:  # pragma: no cover - transformers is installed with the workspace
        raise ConfigError(f"{key}: a pretrained encoder needs transformers: install trident-audio[hf]") from err
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        extractor = AutoFeatureExtractor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"{key}: cannot read {folder}: {err}") from err
    if config.model_type not in SUPPORTED:
        raise ConfigError(f"{folder / 'config.json'}: model_type {config.model_type!r} is not a supported speech "
                          f"encoder; use one of {', '.join(SUPPORTED)}")
    if getattr(config, "add_adapter", False):
        raise ConfigError(f"{folder / 'config.json'}: add_adapter is true; encoders with an adapter are not supported")
    if int(getattr(extractor, "feature_size", 1)) != 1 or not hasattr(extractor, "sampling_rate"):
        raise ConfigError(f"{folder / 'preprocessor_config.json'}: expected a raw-waveform feature extractor "
                          "(feature_size 1, sampling_rate), as Wav2Vec2FeatureExtractor writes")
    return extractor, config


def save_tiny_model(path: str | Path, sample_rate: int = 16000, model_type: str = "wav2vec2", seed: int = 0) -> Path:
    """Save a randomly initialised two-layer, 32-wide ``*ForCTC`` model and its feature extractor to ``path``
    (what ``save_pretrained`` writes for a real checkpoint): for tests and for trying the recipe offline."""
    from transformers import AutoConfig, AutoModelForCTC, Wav2Vec2FeatureExtractor

    torch.manual_seed(seed)
    config = AutoConfig.for_model(
        model_type, vocab_size=12, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32, 32), conv_kernel=(10, 3, 3), conv_stride=(5, 4, 4), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, feat_extract_norm="layer", do_stable_layer_norm=True,
        mask_time_prob=0.05, mask_time_length=2, layerdrop=0.0,
    )
    folder = Path(path)
    AutoModelForCTC.from_config(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=sample_rate, do_normalize=True, return_attention_mask=True).save_pretrained(
        folder)
    return folder
