"""A test callback that records the live weights after every optimizer step (for checking weight averaging)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch


class StepWeights(pl.Callback):
    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []
        self._seen = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step > self._seen:  # one record per optimizer step
            self._seen = trainer.global_step
            self.steps.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})
