"""Throughput (samples/s) and, on GPUs with known peak FLOPs, model FLOPs utilisation."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import ThroughputMonitor


def batch_size_of(batch: Any) -> int:
    """Number of samples in a batch: the first dimension of its first tensor."""
    if torch.is_tensor(batch):
        return int(batch.shape[0])
    if isinstance(batch, dict):
        for value in batch.values():
            if torch.is_tensor(value) or isinstance(value, (dict, list, tuple)):
                return batch_size_of(value)
    if isinstance(batch, (list, tuple)) and batch:
        return batch_size_of(batch[0])
    return 1


class Throughput(ThroughputMonitor):
    """Lightning's ``ThroughputMonitor`` with a batch-size function that fits every Trident batch.

    Logs ``train|device/samples_per_sec`` and friends; MFU appears when the module sets
    ``flops_per_batch`` (see ``lightning.fabric.utilities.throughput.measure_flops``) on a GPU whose peak
    is known.

    Args:
        window_size: Batches averaged per reading.
    """

    def __init__(self, window_size: int = 20) -> None:
        super().__init__(batch_size_fn=batch_size_of, window_size=window_size)
