"""Log the learning rates when the run has a logger: Lightning's ``LearningRateMonitor`` for the default list."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor


class LearningRateTracker(LearningRateMonitor):
    """Lightning's ``LearningRateMonitor`` (same arguments, logged every step by default), idle in a run without a
    logger, where Lightning's raises: so the default ``trainer.callbacks`` also serve ``--trainer.logger false``
    and the debug configs.

    Args:
        logging_interval: ``"step"``, ``"epoch"`` or ``None`` (as the scheduler steps).
        log_momentum: Also log the momentum (or Adam's beta1).
        log_weight_decay: Also log the weight decay.
    """

    def __init__(self, logging_interval: str | None = "step", log_momentum: bool = False,
                 log_weight_decay: bool = False) -> None:
        super().__init__(logging_interval=logging_interval,  # type: ignore[arg-type]
                         log_momentum=log_momentum, log_weight_decay=log_weight_decay)

    def on_train_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)
