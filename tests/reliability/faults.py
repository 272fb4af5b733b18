"""Fault injection for the reliability tests: callbacks a subprocess run loads with ``--trainer.callbacks+=``."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class KillAtStep(Callback):
    """SIGKILL this process (no cleanup, no handlers: a power cut) before optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class ExitRankAtStep(Callback):
    """``os._exit(3)`` on one rank at one step: a rank that dies without telling the others. The time of death
    goes to ``stamp`` (if given)."""

    def __init__(self, rank: int, step: int, stamp: str | None = None) -> None:
        self.rank = rank
        self.step = step
        self.stamp = stamp

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            if self.stamp:
                Path(self.stamp).write_text(repr(time.time()))
            os._exit(3)


class RaiseAtStep(Callback):
    """Raise a ``RuntimeError`` inside training at one step (a bug in user code)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"injected failure at step {self.step}")


class MemoryLimit(Callback):
    """Simulate a device memory limit on the CPU: a batch above ``max_elements`` raises ``torch.OutOfMemoryError``
    as CUDA's allocator would."""

    def __init__(self, max_elements: int) -> None:
        self.max_elements = max_elements

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        if x.numel() > self.max_elements:
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {x.numel() * 4 * 1000} bytes (simulated limit)"
            )


class SaveWeights(Callback):
    """Write the final weights of rank 0 to ``path`` (the comparison point of resumed and DDP runs)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.global_rank == 0:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            torch.save({k: v.detach().clone() for k, v in pl_module.state_dict().items()}, self.path)


class BatchNormMLP(torch.nn.Module):
    """The toy MLP with a BatchNorm over features: PyTorch refuses to train it on a batch of one sample."""

    def __init__(self, in_features: int = 8, hidden: int = 32, num_classes: int = 3) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(in_features, hidden), torch.nn.BatchNorm1d(hidden),
                                        torch.nn.ReLU(), torch.nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
