"""Turn an out-of-memory error into a message that names the batch that failed and what to change."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.data import extract_batch_size

_MAX_SHAPES = 6


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA/XPU/MPS out-of-memory errors and for a CPU allocator that cannot allocate."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def describe_batch(batch: Any) -> tuple[int | None, list[str]]:
    """Batch size (as Lightning infers it) and ``name: shape dtype`` of the first few tensors in ``batch``."""
    shapes: list[str] = []

    def walk(value: Any, name: str) -> None:
        if len(shapes) >= _MAX_SHAPES:
            return
        if isinstance(value, torch.Tensor):
            shapes.append(f"{name or 'input'}: {list(value.shape)} {str(value.dtype).removeprefix('torch.')}")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{name}.{key}" if name else str(key))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, f"{name}[{i}]")

    walk(batch, "")
    try:
        size: int | None = extract_batch_size(batch)
    except Exception:  # batches without a tensor (e.g. lists of strings) have no inferable size
        size = None
    return size, shapes


class OutOfMemoryHint(Callback):
    """Remembers the batch in flight; when it runs out of memory, adds a note naming the stage, the step,
    the batch size, the input shapes and what to change. The CLI prints that note as its error message.

    The original exception is kept (``exception.add_note``), so other handlers, such as
    ``OnExceptionCheckpoint``, still run.
    """

    def __init__(self) -> None:
        self.last: tuple[str, int, Any] | None = None

    def _remember(self, stage: str, batch: Any, batch_idx: int) -> None:
        self.last = (stage, batch_idx, batch)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._remember("train", batch, batch_idx)

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._remember("validation", batch, batch_idx)

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._remember("test", batch, batch_idx)

    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._remember("predict", batch, batch_idx)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not is_out_of_memory(exception) or self.last is None:
            return
        stage, batch_idx, batch = self.last
        size, shapes = describe_batch(batch)
        smaller = f" (e.g. {max(1, size // 2)})" if size and size > 1 else ""
        accumulate = max(2, 2 * trainer.accumulate_grad_batches)
        exception.add_note(
            f"out of memory in the {stage} step, batch {batch_idx} (global step {trainer.global_step}, "
            f"rank {trainer.global_rank}): batch size {size if size is not None else 'unknown'}, inputs "
            f"{'; '.join(shapes) or 'without tensors'}. To fix: lower data.batch_size{smaller} and raise "
            f"trainer.accumulate_grad_batches (to {accumulate}) to keep the effective batch, use --preset bf16 or "
            "fp16 on a GPU, or shorten the inputs (max length, crop size, clip duration)"
        )
