"""Both halves of the intent artifact: what export writes and what serving reads.

:func:`export_spec` turns a trained :class:`~trident_nlp.module.IntentModule` into the core's
:class:`~trident_core.export.ExportSpec` (ONNX net + ``tokenizer.json`` + :class:`IntentMetadata`);
:class:`IntentPredictor` serves the artifact with ``tokenizers`` + onnxruntime (no torch, no Lightning), deciding
in or out of scope with the same :func:`trident_nlp.oos.decide` as the test step; :func:`infer` backs
``trident-nlp infer``.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from trident_core.artifact import Artifact, load_artifact
from trident_core.errors import ArtifactError, ConfigError, DataError
from trident_core.metadata import DomainMetadata
from trident_core.output import write_jsonl
from trident_nlp.oos import SCORES, Decisions, OosStats, decide
from trident_nlp.text import TextEncoder

if TYPE_CHECKING:
    from trident_core.export import ExportSpec
    from trident_nlp.module import IntentModule

INFER_BATCH_SIZE = 32  # texts per onnxruntime call: `infer` and `IntentPredictor.predict` default
TOKENIZER_FILE = "tokenizer.json"
OOS_STATS_FILE = "oos_stats.npz"
_EXPORT_TEXTS = ["where is my order", "i forgot my password and cannot log in to my account today", "hi"]


@dataclass(frozen=True)
class IntentMetadata(DomainMetadata):
    """What inference needs from training, written by :func:`export_spec` and read by :class:`IntentPredictor`.

    Attributes:
        labels: Intent names in logit order.
        oos_label: Label of out-of-scope queries (an entry of ``labels`` when the model has that class).
        score: ``max_prob``, ``energy`` or ``mahalanobis``: what the threshold applies to.
        threshold: Validation-chosen threshold; ``None``: reject nothing on the score.
        operating_point: How validation chose ``threshold`` (for information; the rule is the threshold).
        oos_stats: File of the ``mahalanobis`` score's training statistics (``means``, ``precision``) inside the
            artifact; ``None`` for the logit scores.
        max_length: Truncation length in tokens.
        tokenizer: File of the serialised ``tokenizers.Tokenizer`` inside the artifact.
        backbone: The encoder the model was trained from (for information).
    """

    TASK: ClassVar[str] = "intent_classification"
    labels: list[str]
    oos_label: str
    score: str
    threshold: float | None
    max_length: int
    tokenizer: str = TOKENIZER_FILE
    backbone: str = ""
    operating_point: str = "balanced"
    oos_stats: str | None = None

    @property
    def oos_index(self) -> int | None:
        """Index of the out-of-scope class, ``None`` for a closed-set model."""
        return self.labels.index(self.oos_label) if self.oos_label in self.labels else None


def export_spec(module: IntentModule) -> ExportSpec:
    """ONNX with dynamic batch and sequence, outputs ``logits`` and the pooled ``sentence_embedding``; the artifact
    carries the tokenizer, :class:`IntentMetadata` and, for the ``mahalanobis`` score, ``oos_stats.npz``."""
    import torch

    from trident_core.export import ExportSpec
    from trident_nlp.model import WithEmbedding

    if module.tokenizer_json is None:
        raise ConfigError("this IntentModule has no tokenizer: pass tokenizer_json (the CLI links it from the "
                          "data) or load a checkpoint written by fit")
    net = copy.deepcopy(module.net).float().cpu().eval()
    encoder = TextEncoder(module.tokenizer_json, net.max_length)
    examples = []
    for texts in (_EXPORT_TEXTS[:2], _EXPORT_TEXTS):
        ids, mask = encoder.pad(encoder.encode(texts))
        examples.append((torch.from_numpy(ids), torch.from_numpy(mask)))
    files = {TOKENIZER_FILE: module.tokenizer_json.encode("utf-8")}
    stats = module.oos_stats
    if stats is not None:
        buffer = io.BytesIO()
        np.savez(buffer, **stats.to_arrays())  # type: ignore[arg-type]  # numpy's stub: a key could be allow_pickle
        files[OOS_STATS_FILE] = buffer.getvalue()
    metadata = IntentMetadata(labels=list(module.labels), oos_label=module.oos_label, score=module.score,
                              threshold=module.threshold, max_length=net.max_length, backbone=net.backbone,
                              operating_point=module.operating_point,
                              oos_stats=OOS_STATS_FILE if stats is not None else None)
    return ExportSpec(
        model=WithEmbedding(net),
        example_inputs=examples,
        input_names=["input_ids", "attention_mask"],
        output_names=["logits", "sentence_embedding"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch"},
            "sentence_embedding": {0: "batch"},
        },
        metadata=metadata.to_dict(),
        files=files,
        atol=1e-4,
    )


def prediction_rows(decisions: Decisions, labels: Sequence[str], oos_label: str) -> list[dict[str, Any]]:
    """``{"intent", "confidence", "in_scope"}`` per row: the decided label (``oos_label`` when rejected) and the
    largest softmax probability. The predict step and :class:`IntentPredictor` both answer with these rows."""
    return [
        {"intent": labels[int(index)] if ok else oos_label, "confidence": float(conf), "in_scope": bool(ok)}
        for index, conf, ok in zip(decisions.index, decisions.confidence, decisions.in_scope, strict=True)
    ]


class IntentPredictor:
    """Classifies texts with an exported artifact; below the stored threshold a text is out of scope.

    Args:
        artifact: A loaded artifact (see :meth:`from_artifact`).
    """

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact
        self.metadata = IntentMetadata.from_artifact(artifact)
        if self.metadata.score not in SCORES:
            raise ArtifactError(f"{Path(artifact.path) / 'metadata.json'}: [domain_metadata.score] is "
                                f"{self.metadata.score!r}, expected one of {list(SCORES)}; re-export the checkpoint")
        tokenizer_json = artifact.file(self.metadata.tokenizer).read_text(encoding="utf-8")
        self.encoder = TextEncoder(tokenizer_json, self.metadata.max_length)
        self.stats: OosStats | None = None
        if self.metadata.score == "mahalanobis":
            if not self.metadata.oos_stats:
                raise ArtifactError(f"{Path(artifact.path) / 'metadata.json'}: the mahalanobis score needs "
                                    "[domain_metadata.oos_stats]; re-export the checkpoint")
            with np.load(artifact.file(self.metadata.oos_stats)) as arrays:
                self.stats = OosStats(arrays["means"].astype(np.float64), arrays["precision"].astype(np.float64))

    @classmethod
    def from_artifact(cls, path: str | Path, threads: int | None = None) -> IntentPredictor:
        """Load the artifact folder written by ``trident-nlp export``."""
        return cls(load_artifact(path, threads=threads))

    def outputs(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Raw ``logits`` (and, from artifacts that have it, the pooled ``sentence_embedding``) of a batch."""
        ids, mask = self.encoder.pad(self.encoder.encode(texts))
        return self.artifact.run({"input_ids": ids, "attention_mask": mask})

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits of a batch of texts (padded to the batch's longest)."""
        return self.outputs(texts)["logits"]

    def decide(self, logits: np.ndarray, embeddings: np.ndarray | None = None) -> Decisions:
        """The in-scope decisions of the artifact's rule (:func:`trident_nlp.oos.decide`) on ``logits`` (and the
        pooled ``embeddings`` for the ``mahalanobis`` score)."""
        meta = self.metadata
        return decide(logits, meta.score, meta.oos_index, meta.threshold, embeddings, self.stats)

    def with_threshold(self, threshold: float | None) -> IntentPredictor:
        """A copy that applies another threshold (e.g. to trade in-scope accuracy for out-of-scope recall)."""
        other = copy.copy(self)
        other.metadata = dataclasses.replace(self.metadata, threshold=threshold)
        return other

    def predict(self, texts: Sequence[str], batch_size: int = INFER_BATCH_SIZE) -> list[dict[str, Any]]:
        """``{"text", "intent", "confidence", "in_scope"}`` per text, in order (see :func:`prediction_rows`)."""
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}", key="batch_size")
        texts = list(texts)
        # sort by length so each batch pads little, then restore the input order
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: dict[int, dict[str, Any]] = {}
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out = self.outputs([texts[i] for i in chunk])
            decisions = self.decide(out["logits"], out.get("sentence_embedding"))
            for i, row in zip(chunk, prediction_rows(decisions, self.metadata.labels, self.metadata.oos_label),
                              strict=True):
                results[i] = {"text": texts[i], **row}
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


def infer(
    artifact: str, input: str, output: str | None = None, batch_size: int = INFER_BATCH_SIZE
) -> list[dict[str, Any]]:
    """``trident-nlp infer``: classify text lines or JSONL (``-`` reads stdin); returns one dict per text.

    With ``output``, JSONL is written there (a folder gets ``predictions.jsonl``) and the rows are returned.
    """
    rows = IntentPredictor.from_artifact(artifact).predict(_read_input(input), batch_size=batch_size)
    if output is not None:
        write_jsonl(rows, output, "predictions.jsonl")
    return rows


QUANTIZE_TOLERANCE = 0.01  # at most 1 % of validation intents may change under int8 (agreement >= 99 %)


def quantize_check(float_artifact: str, int8_artifact: str, validation: str) -> dict[str, Any]:
    """``export --quantize int8``'s contract for intents: the fraction of validation texts whose decided intent
    (out-of-scope included) differs between the float and the int8 artifact, with each one's accuracy against
    the ``label`` column when every line has one."""
    from trident_nlp.data import read_texts

    texts = read_texts(validation)
    want = [row["intent"] for row in IntentPredictor.from_artifact(float_artifact).predict(texts)]
    got = [row["intent"] for row in IntentPredictor.from_artifact(int8_artifact).predict(texts)]
    agreement = sum(a == b for a, b in zip(want, got, strict=True)) / len(texts)
    report: dict[str, Any] = {"metric": "intent disagreement", "examples": len(texts), "agreement": agreement,
                              "difference": 1.0 - agreement, "tolerance": QUANTIZE_TOLERANCE}
    try:
        labels = read_texts(validation, "label")
    except DataError:
        return report  # no labels: agreement only
    report["float_accuracy"] = sum(a == b for a, b in zip(want, labels, strict=True)) / len(texts)
    report["int8_accuracy"] = sum(a == b for a, b in zip(got, labels, strict=True)) / len(texts)
    return report
