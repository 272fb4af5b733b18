"""Out-of-scope detection: confidence scores, THE in-scope decision, the validation-chosen threshold, CLINC150
metrics.

numpy only: the test step (on its gathered logits) and the artifact runner (``trident_nlp.export``) call the same
:func:`decide`, so serving applies exactly the rule that was evaluated, without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trident_core.errors import ConfigError

SCORES = ("max_prob", "energy", "mahalanobis")
LOGIT_SCORES = ("max_prob", "energy")
OPERATING_POINTS = ("balanced", "accuracy", "in_scope_accuracy", "oos_recall")


def scores_from_logits(logits: np.ndarray, score: str = "max_prob") -> np.ndarray:
    """In-scope confidence per row: the largest softmax probability, or the energy ``logsumexp(logits)``."""
    if score not in LOGIT_SCORES:
        raise ValueError(f"score must be one of {LOGIT_SCORES}, got {score!r}")
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


@dataclass(frozen=True)
class OosStats:
    """Class means and the shared precision matrix of pooled embeddings (Lee et al., 2018), fitted on training
    data; what the ``mahalanobis`` score needs besides the logits (``oos_stats.npz`` in the artifact).

    Attributes:
        means: ``(in-scope classes, dim)`` means of the in-scope classes present in training.
        precision: ``(dim, dim)`` inverse of the shared within-class covariance (shrunk towards its diagonal).
    """

    means: np.ndarray
    precision: np.ndarray

    @classmethod
    def fit(cls, embeddings: Any, targets: Any, oos_index: int | None, shrinkage: float = 0.1) -> OosStats:
        """Means per in-scope class and the shared covariance around them; the out-of-scope class is left out
        (its queries have no common centre)."""
        z, y = np.asarray(embeddings, dtype=np.float64), np.asarray(targets)
        keep = y != oos_index if oos_index is not None else np.ones(len(y), dtype=bool)
        z, y = z[keep], y[keep]
        classes, inverse = np.unique(y, return_inverse=True)
        if len(classes) == 0:
            raise ConfigError("model.score mahalanobis needs in-scope training queries")
        means = np.stack([z[inverse == k].mean(0) for k in range(len(classes))])
        centred = z - means[inverse]
        cov = centred.T @ centred / max(len(z) - 1, 1)
        # shrinkage keeps the inverse stable when the embedding has more dimensions than queries per class
        cov = (1 - shrinkage) * cov + shrinkage * np.diag(np.diag(cov)) + 1e-6 * np.eye(len(cov))
        return cls(means, np.linalg.inv(cov))

    def scores(self, embeddings: Any) -> np.ndarray:
        """Negative squared Mahalanobis distance to the nearest class mean (higher: more in scope)."""
        z = np.asarray(embeddings, dtype=np.float64)
        zp = z @ self.precision
        dist = (zp * z).sum(1)[:, None] - 2 * zp @ self.means.T + ((self.means @ self.precision) * self.means).sum(1)
        return -dist.min(axis=1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"means": self.means.astype(np.float32), "precision": self.precision.astype(np.float32)}


def decide(
    logits: np.ndarray,
    score: str,
    oos_index: int | None,
    threshold: float | None,
    embeddings: np.ndarray | None = None,
    stats: OosStats | None = None,
) -> Decisions:
    """Everything the test step and inference decide from a batch of logits ``(rows, classes)`` (and, for the
    ``mahalanobis`` score, the pooled ``embeddings`` and the training :class:`OosStats`)."""
    logits = np.asarray(logits, dtype=np.float64)
    argmax = logits.argmax(axis=-1)
    confidence = scores_from_logits(logits, "max_prob")
    if score == "mahalanobis":
        if embeddings is None or stats is None:
            raise ConfigError("the mahalanobis score needs the pooled embeddings and the training statistics")
        scores = stats.scores(embeddings)
    else:
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


def tradeoff_curve(scores: Any, argmax: Any, targets: Any, oos_index: int, points: int = 2048) -> dict[str, np.ndarray]:
    """In-scope accuracy, out-of-scope recall and overall accuracy of :func:`decide` at every candidate threshold.

    Candidates: ``-inf`` (reject nothing) then the observed scores ascending (at most ``points`` quantiles).
    Vectorised with sorted counts instead of one decision per threshold.
    """
    scores, argmax, targets = (np.asarray(x) for x in (scores, argmax, targets))
    in_scope, oos = targets != oos_index, targets == oos_index
    candidates = np.unique(scores)
    if len(candidates) > points:
        candidates = np.unique(np.quantile(scores, np.linspace(0, 1, points)))
    thresholds = np.concatenate([[-np.inf], candidates])
    right = np.sort(scores[in_scope & (argmax == targets) & (argmax != oos_index)])
    accepted_oos = np.sort(scores[oos & (argmax != oos_index)])
    # a score equal to the threshold is in scope: count scores >= t
    n_right = len(right) - np.searchsorted(right, thresholds, side="left")
    n_accepted = len(accepted_oos) - np.searchsorted(accepted_oos, thresholds, side="left")
    n_in, n_oos = max(int(in_scope.sum()), 1), max(int(oos.sum()), 1)
    in_acc, recall = n_right / n_in, 1.0 - n_accepted / n_oos
    acc = (n_right + oos.sum() - n_accepted) / max(len(targets), 1)
    return {"threshold": thresholds, "in_scope_acc": in_acc, "oos_recall": recall, "acc": acc}


def choose_threshold(
    scores: Any,
    argmax: Any,
    targets: Any,
    oos_index: int,
    operating_point: str = "balanced",
    min_oos_recall: float = 0.85,
    min_in_scope_accuracy: float = 0.95,
) -> float:
    """The validation threshold of an operating point (ties go to the lowest threshold):

    - ``balanced``: maximise the mean of in-scope accuracy and out-of-scope recall;
    - ``accuracy``: maximise the accuracy over all queries;
    - ``in_scope_accuracy``: maximise in-scope accuracy with out-of-scope recall >= ``min_oos_recall``;
    - ``oos_recall``: maximise out-of-scope recall with in-scope accuracy >= ``min_in_scope_accuracy``.

    Without out-of-scope or in-scope queries in validation nothing can be calibrated: ``-inf``.

    Raises:
        ConfigError: a constraint that no threshold meets on validation (names the best reachable value).
    """
    if operating_point not in OPERATING_POINTS:
        raise ConfigError(f"model.operating_point must be one of {list(OPERATING_POINTS)}, got {operating_point!r}")
    targets = np.asarray(targets)
    if not (targets == oos_index).any() or not (targets != oos_index).any():
        return float("-inf")
    curve = tradeoff_curve(scores, argmax, targets, oos_index)
    in_acc, recall = curve["in_scope_acc"], curve["oos_recall"]
    if operating_point == "balanced":
        objective = (in_acc + recall) / 2
    elif operating_point == "accuracy":
        objective = curve["acc"]
    elif operating_point == "in_scope_accuracy":
        if recall.max() < min_oos_recall - 1e-12:
            raise ConfigError(f"model.min_oos_recall {min_oos_recall:.4f} is not reachable on validation: the "
                              f"best out-of-scope recall is {recall.max():.4f}; lower model.min_oos_recall")
        objective = np.where(recall >= min_oos_recall - 1e-12, in_acc, -np.inf)
    else:
        if in_acc.max() < min_in_scope_accuracy - 1e-12:
            raise ConfigError(f"model.min_in_scope_accuracy {min_in_scope_accuracy:.4f} is not reachable on "
                              f"validation: the best in-scope accuracy is {in_acc.max():.4f}; lower "
                              "model.min_in_scope_accuracy")
        # among equal recall, the highest in-scope accuracy (a tiny tie-breaker)
        objective = np.where(in_acc >= min_in_scope_accuracy - 1e-12, recall + 1e-9 * in_acc, -np.inf)
    return float(curve["threshold"][int(np.argmax(objective))])


def detection_metrics(scores: Any, argmax: Any, targets: Any, oos_index: int) -> dict[str, float]:
    """Threshold-free figures of the detector, in-scope queries as positives: AUROC, AUPR with in-scope
    (``aupr_in``) and out-of-scope (``aupr_out``) as the positive class, and the out-of-scope share accepted when
    95 % of in-scope queries are (``fpr_at_95_tpr``). A query the model assigns to the out-of-scope class is
    rejected whatever its score, so it ranks lowest."""
    scores, argmax, targets = (np.asarray(x, dtype=np.float64) for x in (scores, argmax, targets))
    floor = scores.min() - 1.0 if len(scores) else 0.0
    ranked = np.where(argmax == oos_index, floor, scores)  # a finite floor: ties stay ties (-inf - -inf is nan)
    positive = targets != oos_index
    if positive.all() or not positive.any():
        nan = float("nan")
        return {"auroc": nan, "aupr_in": nan, "aupr_out": nan, "fpr_at_95_tpr": nan}
    tpr, fpr, precision = _roc(ranked, positive)
    tpr_out, _, precision_out = _roc(-ranked, ~positive)
    at95 = int(np.searchsorted(tpr, 0.95, side="left"))
    return {
        "auroc": float(np.trapezoid(tpr, fpr)),
        "aupr_in": float(np.sum(np.diff(tpr) * precision[1:])),
        "aupr_out": float(np.sum(np.diff(tpr_out) * precision_out[1:])),
        "fpr_at_95_tpr": float(fpr[min(at95, len(fpr) - 1)]),
    }


def _roc(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TPR, FPR and precision at every distinct threshold, descending (ties move together), from (0, 0)."""
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last row of each run of equal scores
    tp, fp = np.cumsum(p)[last], np.cumsum(~p)[last]
    tpr = np.r_[0.0, tp / p.sum()]
    fpr = np.r_[0.0, fp / (~p).sum()]
    precision = np.r_[1.0, tp / (tp + fp)]
    return tpr, fpr, precision
