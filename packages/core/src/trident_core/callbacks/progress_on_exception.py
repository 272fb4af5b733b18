"""``ProgressOnException``: Lightning's ``OnExceptionCheckpoint``, minus the checkpoint of a run that never trained."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import OnExceptionCheckpoint


class ProgressOnException(OnExceptionCheckpoint):
    """Saves ``on_exception.ckpt`` when training fails, so the steps taken are not lost; saves nothing before the
    first optimizer step. A run that fails in setup (a bad data file, a wrong config) has no progress to keep, and
    an untrained ``on_exception.ckpt`` would make the fixed rerun in the same folder refuse to start ("this folder
    holds an earlier run")."""

    def on_exception(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        if trainer.global_step == 0:
            return
        super().on_exception(trainer, *args, **kwargs)
