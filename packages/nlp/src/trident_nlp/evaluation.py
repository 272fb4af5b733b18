"""What the test epoch of :class:`~trident_nlp.module.IntentModule` reports beyond its metrics: the threshold-free
out-of-scope figures with the trade-off curve, and the per-intent report with the confusion matrix (files in the
run folder, and images under a W&B logger)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from trident_nlp.oos import Decisions, detection_metrics, oos_metrics, tradeoff_curve

if TYPE_CHECKING:
    from trident_nlp.module import IntentModule


def log_detection(module: IntentModule, decisions: Decisions, targets: Any, folder: Path) -> None:
    """Threshold-free figures (AUROC, AUPR, FPR at 95 % TPR) and the in-scope accuracy vs out-of-scope recall
    curve: ``oos_curve.png`` and, under a W&B logger, a ``wandb.plot.line``."""
    assert module.oos_index is not None
    figures = detection_metrics(decisions.score, decisions.argmax, targets, module.oos_index)
    module.log_dict({f"test/oos_{key}": value for key, value in figures.items()})
    if not module.trainer.is_global_zero:
        return
    from trident_nlp.report import NO_MATPLOTLIB, log_curve_to_wandb, plot_tradeoff

    curve = tradeoff_curve(decisions.score, decisions.argmax, targets, module.oos_index)
    point = oos_metrics(decisions.index, targets, module.oos_index)
    image = plot_tradeoff(curve, point, folder / "oos_curve.png", f"{module.score}, {module.operating_point}")
    if image is None:
        rank_zero_info(NO_MATPLOTLIB.format("oos_curve.png"))
    for logger in module.trainer.loggers:
        if isinstance(logger, WandbLogger):
            log_curve_to_wandb(logger, curve)


def log_test_report(module: IntentModule, decisions: Decisions, targets: Any, folder: Path) -> None:
    """The per-intent report (printed and written) and ``confusion_matrix.png`` (also to W&B); global rank zero."""
    from trident_nlp.report import NO_MATPLOTLIB, write_test_report

    text, image = write_test_report(decisions.argmax, targets, module.labels, folder)
    rank_zero_info(text)
    if image is None:
        rank_zero_info(NO_MATPLOTLIB.format("confusion_matrix.png"))
    for logger in module.trainer.loggers:
        if isinstance(logger, WandbLogger) and image is not None:
            logger.log_image(key="test/confusion_matrix", images=[str(image)])
