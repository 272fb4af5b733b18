"""Learning-rate schedules used by :class:`~trident_core.module.TaskModule` by default."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine:
    """LR multiplier: linear warmup from 0 to 1 over ``warmup_steps``, then cosine decay to ``min_ratio``."""

    def __init__(self, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> None:
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = max(0, min(int(warmup_steps), self.total_steps - 1))
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> LambdaLR:
    """A per-step ``LambdaLR`` with linear warmup and cosine decay."""
    return LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps, min_ratio))
