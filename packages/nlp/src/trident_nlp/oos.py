"""Out-of-scope detection: confidence scores, the validation-chosen threshold, CLINC150-style metrics.

numpy only, so the artifact-based inference uses exactly the same rule as training-time evaluation.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def scores_from_logits(logits: np.ndarray, score: str = "max_prob") -> np.ndarray:
    """In-scope confidence per row: the largest softmax probability, or the energy ``logsumexp(logits)``."""
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(axis=-1, keepdims=True)
    lse = (top + np.log(np.exp(logits - top).sum(axis=-1, keepdims=True)))[..., 0]
    if score == "energy":
        return lse
    return np.exp(top[..., 0] - lse)


def apply_threshold(
    preds: np.ndarray, scores: np.ndarray, oos_index: int | None, threshold: float | None
) -> np.ndarray:
    """Predictions with every score below ``threshold`` turned into ``oos_index``."""
    preds = np.asarray(preds).copy()
    if oos_index is not None and threshold is not None:
        preds[np.asarray(scores) < threshold] = oos_index
    return preds


def oos_metrics(scores: Any, preds: Any, targets: Any, oos_index: int, threshold: float | None) -> dict[str, float]:
    """CLINC150 metrics (Larson et al., 2019): in-scope accuracy over in-scope queries (a rejected in-scope
    query counts as wrong) and out-of-scope recall over out-of-scope queries."""
    targets = np.asarray(targets)
    final = apply_threshold(np.asarray(preds), np.asarray(scores), oos_index, threshold)
    in_scope = targets != oos_index
    return {
        "in_scope_acc": float((final[in_scope] == targets[in_scope]).mean()) if in_scope.any() else float("nan"),
        "oos_recall": float((final[~in_scope] == oos_index).mean()) if (~in_scope).any() else float("nan"),
        "acc": float((final == targets).mean()) if len(targets) else float("nan"),
    }


def choose_threshold(scores: Any, preds: Any, targets: Any, oos_index: int) -> float:
    """The threshold that maximises the mean of in-scope accuracy and out-of-scope recall on validation.

    Candidates are the observed scores (at most 512 quantiles) and ``-inf`` (reject nothing); ties go to the
    lowest threshold. Without out-of-scope queries in validation nothing can be calibrated: ``-inf``.
    """
    scores, preds, targets = (np.asarray(x) for x in (scores, preds, targets))
    if not (targets == oos_index).any() or not (targets != oos_index).any():
        return float("-inf")
    candidates = np.unique(scores)
    if len(candidates) > 512:
        candidates = np.unique(np.quantile(scores, np.linspace(0, 1, 512)))
    best, best_value = float("-inf"), -1.0
    for threshold in [float("-inf"), *candidates.tolist()]:
        m = oos_metrics(scores, preds, targets, oos_index, threshold)
        value = (m["in_scope_acc"] + m["oos_recall"]) / 2
        if value > best_value + 1e-12:
            best, best_value = threshold, value
    return best
