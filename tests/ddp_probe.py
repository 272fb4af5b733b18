"""Callbacks for the domains' 2-process DDP tests (loaded by class path in the subprocesses): each rank writes
``probe-rank<R>.json`` with the samples it trained on, a hash of its final weights and the world size."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback


class RankProbe(Callback):
    """Base: subclasses say what identifies the samples of a batch."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def samples(self, batch: Any) -> list[Any]:
        raise NotImplementedError

    def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
        self.seen += self.samples(batch)

    def on_train_end(self, trainer: Any, module: Any) -> None:
        digest = hashlib.sha256()
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
        out = Path(trainer.default_root_dir) / f"probe-rank{trainer.global_rank}.json"
        out.write_text(json.dumps({"seen": self.seen, "weights": digest.hexdigest(), "world": trainer.world_size}))


class TokenRowsProbe(RankProbe):
    """nlp: a sample is its token ids without padding."""

    def samples(self, batch: Any) -> list[Any]:
        rows = zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(), strict=True)
        return [ids[: sum(mask)] for ids, mask in rows]


class AudioFilesProbe(RankProbe):
    """audio: a sample is its audio file."""

    def samples(self, batch: Any) -> list[Any]:
        return list(batch["audio_filepath"])
