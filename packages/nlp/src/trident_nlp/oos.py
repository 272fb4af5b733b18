"""Out-of-scope detection: confidence scores, THE in-scope decision, the validation-chosen threshold, CLINC150
metrics.

numpy only: the test step (on its gathered logits) and the artifact runner (``trident_nlp.export``) call the same
:func:`decide`, so serving applies exactly the rule that was evaluated, without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SCORES = ("max_prob", "energy")


def scores_from_logits(logits: np.ndarray, score: str = "max_prob") -> np.ndarray:
    """In-scope confidence per row: the largest softmax probability, or the energy ``logsumexp(logits)``."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(axis=-1, keepdims=True)
    lse = (top + np.log(np.exp(logits - top).sum(axis=-1, keepdims=True)))[..., 0]
    if score == "energy":
        return lse
    return np.exp(top[..., 0] - lse)


def in_scope_rule(argmax: np.ndarray, scores: np.ndarray, oos_index: int | None, threshold: float | None) -> np.ndarray:
    """The rule itself: a query is in scope unless the model predicts the out-of-scope class or its score is
    below ``threshold`` (``None``: no threshold; a score equal to the threshold is in scope)."""
    in_scope = np.ones(np.shape(argmax), dtype=bool)
    if oos_index is not None:
        in_scope &= np.asarray(argmax) != oos_index
    if threshold is not None:
        in_scope &= np.asarray(scores) >= threshold
    return in_scope


def final_index(argmax: np.ndarray, in_scope: np.ndarray, oos_index: int | None) -> np.ndarray:
    """The decided class per row: the model's choice when in scope, else the out-of-scope class (when the labels
    have one; a closed-set model keeps its choice and only the ``in_scope`` flag says it was rejected)."""
    if oos_index is None:
        return np.asarray(argmax).copy()
    return np.where(in_scope, argmax, oos_index)


@dataclass(frozen=True)
class Decisions:
    """Per-row outcome of :func:`decide` (numpy arrays of one length).

    Attributes:
        argmax: The model's top class (closed-set prediction).
        confidence: Its softmax probability.
        score: The score the threshold applies to.
        in_scope: Whether the query is accepted.
        index: The decided class (:func:`final_index`).
    """

    argmax: np.ndarray
    confidence: np.ndarray
    score: np.ndarray
    in_scope: np.ndarray
    index: np.ndarray


def decide(logits: np.ndarray, score: str, oos_index: int | None, threshold: float | None) -> Decisions:
    """Everything the test step and inference decide from a batch of logits ``(rows, classes)``."""
    logits = np.asarray(logits, dtype=np.float64)
    argmax = logits.argmax(axis=-1)
    confidence = scores_from_logits(logits, "max_prob")
    scores = confidence if score == "max_prob" else scores_from_logits(logits, score)
    in_scope = in_scope_rule(argmax, scores, oos_index, threshold)
    return Decisions(argmax, confidence, scores, in_scope, final_index(argmax, in_scope, oos_index))


def oos_metrics(final: Any, targets: Any, oos_index: int) -> dict[str, float]:
    """CLINC150 metrics (Larson et al., 2019) of decided classes: in-scope accuracy over in-scope queries (a
    rejected in-scope query counts as wrong) and out-of-scope recall over out-of-scope queries."""
    final, targets = np.asarray(final), np.asarray(targets)
    in_scope = targets != oos_index
    return {
        "in_scope_acc": float((final[in_scope] == targets[in_scope]).mean()) if in_scope.any() else float("nan"),
        "oos_recall": float((final[~in_scope] == oos_index).mean()) if (~in_scope).any() else float("nan"),
        "acc": float((final == targets).mean()) if len(targets) else float("nan"),
    }


def choose_threshold(scores: Any, argmax: Any, targets: Any, oos_index: int) -> float:
    """The threshold that maximises the mean of in-scope accuracy and out-of-scope recall on validation.

    Candidates are the observed scores (at most 512 quantiles) and ``-inf`` (reject nothing); ties go to the
    lowest threshold. Without out-of-scope queries in validation nothing can be calibrated: ``-inf``.
    """
    scores, argmax, targets = (np.asarray(x) for x in (scores, argmax, targets))
    if not (targets == oos_index).any() or not (targets != oos_index).any():
        return float("-inf")
    candidates = np.unique(scores)
    if len(candidates) > 512:
        candidates = np.unique(np.quantile(scores, np.linspace(0, 1, 512)))
    best, best_value = float("-inf"), -1.0
    for threshold in [float("-inf"), *candidates.tolist()]:
        final = final_index(argmax, in_scope_rule(argmax, scores, oos_index, threshold), oos_index)
        m = oos_metrics(final, targets, oos_index)
        value = (m["in_scope_acc"] + m["oos_recall"]) / 2
        if value > best_value + 1e-12:
            best, best_value = threshold, value
    return best
