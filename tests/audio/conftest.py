"""Fixtures of the audio tests: WAV/FLAC writers and a tiny synthesised corpus shared by the session."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import soundfile as sf

if TYPE_CHECKING:
    from trident_audio.module import SpeechModule


def tone(seconds: float, sample_rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


@pytest.fixture
def write_wav() -> Callable[..., Path]:
    def write(path: Path, seconds: float = 0.5, sample_rate: int = 16000, channels: int = 1, freq: float = 440.0,
              fmt: str = "WAV") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone(seconds, sample_rate, freq, channels), sample_rate, format=fmt)
        return path

    return write


@pytest.fixture
def write_manifest() -> Callable[..., Path]:
    def write(path: Path, rows: list[dict | str]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
        return path

    return write


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24-sentence synthesised corpus (train 20 / val 2 / test 2), built once per test session."""
    from trident_audio.defaults import build_corpus

    return build_corpus(tmp_path_factory.mktemp("audio") / "corpus", sentences=24, seed=0)


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[SpeechModule, Path]:
    """A tiny untrained module with a word LM counted from three texts (beam 8, weight 1, bonus 0.5), and its
    artifact; exported once per session (about 30 s on a busy 2-core machine)."""
    import torch

    from trident_audio.model import tiny_encoder
    from trident_audio.module import SpeechModule
    from trident_core.export import export_artifact

    torch.manual_seed(0)
    module = SpeechModule(tiny_encoder(), lm_texts=["ab", "ab ab", "ab ba"], decoder="beam", beam_size=8,
                          lm_weight=1.0, word_bonus=0.5).eval()
    folder = tmp_path_factory.mktemp("seam") / "artifact"
    export_artifact(module.export_spec(), folder, domain="audio")
    return module, folder
