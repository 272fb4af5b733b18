"""The per-intent test report and the confusion-matrix plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

# matplotlib is the optional `plots` extra: without it the PNGs are skipped and the caller logs this note
NO_MATPLOTLIB = "matplotlib is not installed: {} skipped (pip install 'trident-nlp[plots]' to get it)"


def per_intent_report(preds: Any, targets: Any, labels: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of every intent."""
    preds, targets = np.asarray(preds), np.asarray(targets)
    report = {}
    for i, label in enumerate(labels):
        tp = int(((preds == i) & (targets == i)).sum())
        predicted, support = int((preds == i).sum()), int((targets == i).sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return report


def confusion(preds: Any, targets: Any, n: int) -> np.ndarray:
    """``matrix[true, predicted]`` counts."""
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (np.asarray(targets), np.asarray(preds)), 1)
    return matrix


def plot_confusion(matrix: np.ndarray, labels: list[str], path: Path) -> Path:
    """Save a row-normalised confusion matrix as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = matrix.sum(1, keepdims=True).clip(min=1)
    size = max(6.0, 0.35 * len(labels))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix / rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_test_report(preds: Any, targets: Any, labels: list[str], folder: Path) -> tuple[str, Path | None]:
    """Write ``test_report.json`` and ``confusion_matrix.png`` into ``folder``; returns a text table and the PNG's
    path (``None`` when matplotlib is not installed)."""
    folder.mkdir(parents=True, exist_ok=True)
    report = per_intent_report(preds, targets, labels)
    matrix = confusion(preds, targets, len(labels))
    (folder / "test_report.json").write_text(
        json.dumps({"per_intent": report, "confusion_matrix": matrix.tolist(), "labels": labels}, indent=2)
    )
    width = max(len(label) for label in labels)
    lines = [f"{'intent':<{width}}  precision  recall     f1  support"]
    lines += [
        f"{label:<{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  {r['support']:7d}"
        for label, r in report.items()
    ]
    try:
        image = plot_confusion(matrix, labels, folder / "confusion_matrix.png")
    except ImportError:
        image = None
    return "\n".join(lines), image


def plot_tradeoff(curve: dict[str, np.ndarray], point: dict[str, float], path: Path, title: str) -> Path | None:
    """In-scope accuracy against out-of-scope recall over all thresholds, the model's operating point marked;
    ``None`` when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(curve["oos_recall"], curve["in_scope_acc"], lw=1.5)
    ax.plot([point["oos_recall"]], [point["in_scope_acc"]], "o", color="C3", label="operating point")
    ax.set_xlabel("out-of-scope recall")
    ax.set_ylabel("in-scope accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def log_curve_to_wandb(logger: Any, curve: dict[str, np.ndarray], points: int = 200) -> None:
    """The same curve as a ``wandb.plot.line`` (``test/oos_curve``), thinned to ``points`` rows."""
    import wandb

    step = max(1, len(curve["oos_recall"]) // points)
    rows = [[float(r), float(a)] for r, a in zip(curve["oos_recall"][::step], curve["in_scope_acc"][::step],
                                                strict=True)]
    table = wandb.Table(data=rows, columns=["oos_recall", "in_scope_acc"])
    plot = wandb.plot.line(table, "oos_recall", "in_scope_acc", title="in-scope accuracy vs out-of-scope recall")
    logger.experiment.log({"test/oos_curve": plot})
