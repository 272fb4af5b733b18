"""A callback for the DDP test: each rank writes its weights' digest and the cases it cached."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer


class RankProbe(Callback):
    """Writes ``rank<N>.json`` with a SHA-256 of the weights and the training cases this rank cached."""

    def __init__(self, output: str) -> None:
        self.output = output

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.state_dict().items()):
            digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
        cached = [Path(e["image"]).name for e in trainer.datamodule.datasets["train"].data]
        report = {"rank": trainer.global_rank, "world_size": trainer.world_size, "weights": digest.hexdigest(),
                  "cached_train": cached, "steps": trainer.global_step}
        path = Path(self.output) / f"rank{trainer.global_rank}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report))
