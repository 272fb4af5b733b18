"""Artifact-based intent inference: ``tokenizers`` + onnxruntime, no torch, no Lightning.

``IntentClassifier.from_artifact(dir).predict(texts)`` is the Python API; :func:`infer` backs
``trident-nlp infer``. Artifacts are written by the core (``trident-nlp export``) from
:meth:`trident_nlp.module.IntentModule.export_spec`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trident_core.artifact import Artifact, load_artifact
from trident_core.errors import ArtifactError, DataError
from trident_nlp.oos import apply_threshold, scores_from_logits

_REQUIRED = ("labels", "oos_label", "threshold", "score", "max_length", "tokenizer")


class IntentClassifier:
    """Classifies texts with an exported artifact; below the stored threshold a text is out of scope.

    Args:
        artifact: A loaded artifact (see :meth:`from_artifact`).
    """

    def __init__(self, artifact: Artifact) -> None:
        meta = artifact.domain_metadata
        missing = [key for key in _REQUIRED if key not in meta]
        if missing:
            raise ArtifactError(f"{artifact.path}: not an intent artifact (domain_metadata lacks {missing})")
        from trident_nlp.text import TextEncoder

        self.artifact = artifact
        self.labels: list[str] = list(meta["labels"])
        self.oos_label: str = meta["oos_label"]
        self.oos_index = self.labels.index(self.oos_label) if self.oos_label in self.labels else None
        self.threshold: float | None = meta["threshold"]
        self.score: str = meta["score"]
        tokenizer_json = artifact.file(meta["tokenizer"]).read_text(encoding="utf-8")
        self.encoder = TextEncoder(tokenizer_json, int(meta["max_length"]))

    @classmethod
    def from_artifact(cls, path: str | Path, threads: int | None = None) -> IntentClassifier:
        """Load the artifact folder written by ``trident-nlp export``."""
        return cls(load_artifact(path, threads=threads))

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits of a batch of texts (padded to the batch's longest)."""
        ids, mask = self.encoder.pad(self.encoder.encode(texts))
        feeds = {"input_ids": np.asarray(ids, dtype=np.int64), "attention_mask": np.asarray(mask, dtype=np.int64)}
        return self.artifact.run(feeds)["logits"]

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[dict[str, Any]]:
        """``{"text", "intent", "confidence", "in_scope"}`` per text, in order.

        ``confidence`` is the largest softmax probability; a text is out of scope (``intent`` becomes the
        out-of-scope label) when the model predicts that label or its score is below the threshold.
        """
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}", key="batch_size")
        texts = list(texts)
        # sort by length so each batch pads little, then restore the input order
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: dict[int, dict[str, Any]] = {}
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            logits = self.logits([texts[i] for i in chunk])
            probs = scores_from_logits(logits, "max_prob")
            scores = probs if self.score == "max_prob" else scores_from_logits(logits, self.score)
            preds = logits.argmax(-1)
            final = apply_threshold(preds, scores, self.oos_index, self.threshold)
            for row, i in enumerate(chunk):
                if self.oos_index is not None:
                    in_scope = bool(final[row] != self.oos_index)
                else:
                    in_scope = self.threshold is None or bool(scores[row] >= self.threshold)
                intent = self.labels[int(final[row])] if in_scope else self.oos_label
                results[i] = {"text": texts[i], "intent": intent, "confidence": float(probs[row]), "in_scope": in_scope}
        return [results[i] for i in range(len(texts))]


def _read_input(source: str) -> list[str]:
    from trident_nlp.data import read_texts

    if source != "-":
        return read_texts(source)
    texts = []
    for number, line in enumerate(sys.stdin, start=1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                row = json.loads(line)
            except ValueError as err:
                raise DataError(f"not valid JSON ({err})", path="<stdin>", line=number) from err
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise DataError("expected a JSON object with a string text", path="<stdin>", line=number, key="text")
            line = row["text"]
        texts.append(line)
    return texts


def infer(artifact: str, input: str, output: str | None = None, batch_size: int = 32) -> list[dict[str, Any]]:
    """``trident-nlp infer``: classify text lines or JSONL (``-`` reads stdin); returns one dict per text.

    With ``output``, JSONL is written there (a folder gets ``predictions.jsonl``) and the rows are returned.
    """
    classifier = IntentClassifier.from_artifact(artifact)
    rows = classifier.predict(_read_input(input), batch_size=batch_size)
    if output is not None:
        target = Path(output)
        if target.is_dir() or output.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
            target = target / "predictions.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return rows
