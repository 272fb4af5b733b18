"""``trident serve`` for speech artifacts: ``{"audio": base64 WAV/FLAC}`` in, ``{"text", "duration"}`` out.

A thin adapter around :class:`~trident_audio.export.Transcriber`: the request's bytes are written to a temporary
file and read with ``Transcriber.read`` (any rate, mono or stereo; resampled and mixed down as ``infer`` does).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from trident_audio.export import Transcriber
from trident_core.artifact import Artifact
from trident_core.errors import DataError
from trident_core.serve import Limits, RequestError, decode_b64


class Serving:
    """Decodes requests for, runs, and encodes the answers of a :class:`Transcriber`.

    Args:
        artifact: The opened speech artifact.
        limits: ``max_audio_seconds`` is applied here (413).
    """

    def __init__(self, artifact: Artifact, limits: Limits) -> None:
        self.transcriber = Transcriber(artifact)
        self.limits = limits

    def decode(self, request: dict[str, Any]) -> tuple[np.ndarray, float]:
        data = decode_b64(request, "audio")
        try:
            info = sf.info(io.BytesIO(data))
        except Exception:  # soundfile raises several untyped errors for unreadable bytes
            raise RequestError(400, "audio", "not a readable WAV/FLAC file") from None
        duration = info.frames / info.samplerate if info.samplerate else 0.0
        if duration > self.limits.max_audio_seconds:
            raise RequestError(413, "audio", f"audio of {duration:.1f} s is over the limit of "
                                             f"{self.limits.max_audio_seconds:g} s")
        with tempfile.TemporaryDirectory(prefix="trident-serve-") as folder:
            path = Path(folder) / f"request.{info.format.lower()}"
            path.write_bytes(data)
            try:
                return self.transcriber.read(path), duration
            except DataError as err:
                raise RequestError(400, "audio", str(err).replace(str(path), "audio")) from None

    def predict(self, items: list[tuple[np.ndarray, float]]) -> list[dict[str, Any]]:
        texts = self.transcriber.transcribe([wave for wave, _ in items], batch_size=len(items))
        return [{"text": text, "duration": duration} for text, (_, duration) in zip(texts, items, strict=True)]

    def encode(self, row: dict[str, Any]) -> dict[str, Any]:
        return row
