"""``trident serve`` for intent artifacts: ``{"text"}`` in, ``{"intent", "confidence", "in_scope"}`` out.

A thin adapter around :class:`~trident_nlp.export.IntentPredictor` (tokenizers + onnxruntime, no torch).
"""

from __future__ import annotations

from typing import Any

from trident_core.artifact import Artifact
from trident_core.serve import Limits, RequestError
from trident_nlp.export import IntentPredictor

MAX_TEXT_CHARS = 100_000  # far beyond max_length tokens; stops a huge string from tying up the tokenizer


class Serving:
    """Decodes requests for, runs, and encodes the answers of an :class:`IntentPredictor`.

    Args:
        artifact: The opened intent artifact.
        limits: The server's request limits (the body limit already bounds a text).
    """

    def __init__(self, artifact: Artifact, limits: Limits) -> None:
        self.predictor = IntentPredictor(artifact)

    def decode(self, request: dict[str, Any]) -> str:
        text = request.get("text")
        if not isinstance(text, str):
            raise RequestError(400, "text", "expected a JSON string in 'text'")
        if len(text) > MAX_TEXT_CHARS:
            raise RequestError(413, "text", f"text longer than {MAX_TEXT_CHARS} characters")
        return text

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        return self.predictor.predict(texts, batch_size=len(texts))

    def encode(self, row: dict[str, Any]) -> dict[str, Any]:
        return {key: row[key] for key in ("intent", "confidence", "in_scope")}
