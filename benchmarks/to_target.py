"""The callback both time-to-target rows (P2, P4) hand to Trident's CLI run."""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch.callbacks import Callback


class EvalsUntil(Callback):
    """Records (seconds since ``start``, ``metric``) after every validation and stops the fit once the value
    reaches ``top``. ``start`` is construction time; a caller whose clock starts later sets the attribute."""

    def __init__(self, metric: str, top: float) -> None:
        self.metric, self.top = metric, top
        self.start = time.perf_counter()
        self.evals: list[tuple[float, float]] = []

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        self.evals.append((time.perf_counter() - self.start, float(trainer.callback_metrics[self.metric])))
        if self.evals[-1][1] >= self.top:
            trainer.should_stop = True
