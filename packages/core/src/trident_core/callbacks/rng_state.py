"""Carry the random number generators through a checkpoint, so a resumed run draws what the original would."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class RngState(Callback):
    """Saves the Python, NumPy, torch (and CUDA) generator states with every checkpoint and puts them back
    when a resumed run starts training.

    Lightning re-seeds at start-up but does not checkpoint the generators, so after ``fit --ckpt_path`` dropout
    masks and random augmentations would differ from an uninterrupted run. The states are plain lists and
    tensors, loadable with ``weights_only=True``.
    """

    def __init__(self) -> None:
        self.pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        version, state, gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
        states: dict[str, Any] = {
            "python": [version, list(state), gauss],
            "numpy": [kind, np.asarray(keys).tolist(), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states["cuda"] = torch.cuda.get_rng_state_all()
        return states

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pending = dict(state_dict)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # after the sanity check and the restore, right where the original run went on training
        if not self.pending:
            return
        states, self.pending = self.pending, None
        version, state, gauss = states["python"]
        random.setstate((version, tuple(state), gauss))
        kind, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(states["torch"])
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
