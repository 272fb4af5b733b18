"""What a run writes: its size before training (an estimate) and after it (the folders, measured).

A checkpoint holds the weights and, by default, the optimizer state: AdamW keeps two moments per weight, so a
checkpoint is about three times the weights. ``--checkpoint.save_weights_only true`` writes the best checkpoints
without it (``last.ckpt`` keeps it: resuming needs it).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# Adam and AdamW keep two tensors per weight (exp_avg, exp_avg_sq); the estimate before training assumes them
ADAM_STATE_PER_WEIGHT = 2


def human(size: float) -> str:
    """``1.5 GiB``, ``12.0 MiB``, ``3.2 KiB``, ``512 B``."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


def disk_bytes(paths: Iterable[str | Path], seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes that the files under ``paths`` (files or folders) hold; each file counted once, however many hard
    links point at it (the W&B artifact links share the bytes of the files they log). Symlinks are not followed."""
    seen = set() if seen is None else seen
    total = 0
    for path in paths:
        path = Path(path)
        files = [path] if path.is_file() else (path.rglob("*") if path.is_dir() else [])
        for f in files:
            try:
                st = f.lstat()
            except OSError:
                continue
            if f.is_symlink() or not f.is_file() or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def tensor_bytes(tensors: Any) -> int:
    """Bytes of every tensor in a (nested) state dict."""
    if isinstance(tensors, torch.Tensor):
        return tensors.numel() * tensors.element_size()
    if isinstance(tensors, dict):
        return sum(tensor_bytes(v) for v in tensors.values())
    if isinstance(tensors, list | tuple):
        return sum(tensor_bytes(v) for v in tensors)
    return 0


@dataclass
class CheckpointPolicy:
    """How many checkpoint files a run keeps at once."""

    save_top_k: int = 1
    keep_last: bool = True
    best_weights_only: bool = False
    export: bool = True
    max_epochs: int | None = None

    def estimate(self, weights: int) -> int:
        """Bytes the run is likely to write at its peak, for a model with ``weights`` bytes: the best checkpoints,
        ``last.ckpt``, one more checkpoint being written next to its target before it replaces it, and the
        artifact (ONNX, ``.pt2`` and safetensors: about one copy of the weights each)."""
        full = weights * (1 + ADAM_STATE_PER_WEIGHT)
        best = weights if self.best_weights_only else full
        top_k = self.save_top_k if self.save_top_k >= 0 else max(self.max_epochs or 1, 1)
        total = top_k * best + (full if self.keep_last else 0) + full
        return total + (3 * weights if self.export else 0)


def run_report(
    root: Path, checkpoint_dirs: Iterable[Path], artifact: Path | None, wandb_dir: Path | None,
    weights: int, optimizer_state: int,
) -> str:
    """Where the run's files are and how much disk they use, with what a checkpoint holds."""
    seen: set[tuple[int, int]] = set()
    lines: list[str] = []
    parts: list[tuple[str, Path | list[Path]]] = [("checkpoints", sorted(set(checkpoint_dirs)))]
    if artifact is not None:
        parts.append(("artifact", artifact))
    if wandb_dir is not None:
        parts.append(("W&B", wandb_dir))
    for label, where in parts:
        folders = where if isinstance(where, list) else [where]
        size = disk_bytes(folders, seen)
        shown = ", ".join(str(f) for f in folders)
        line = f"  {label:<12} {human(size):>10}  {shown}"
        if label == "W&B":
            line += "  (logged artifacts are hard links to the files above: no copies)"
        lines.append(line)
    other = disk_bytes([root], seen)  # config.yaml, predictions, anything else in the run folder
    if other:
        lines.append(f"  {'other':<12} {human(other):>10}  {root}")
    total = disk_bytes([root, *checkpoint_dirs, *(p for p in (artifact, wandb_dir) if p)])
    free = shutil.disk_usage(root).free if root.exists() else 0
    head = f"run files: {human(total)} on disk ({human(free)} free); delete {root} to free them"
    ckpt = (f"  a checkpoint holds the weights ({human(weights)}) and the optimizer state ({human(optimizer_state)}); "
            "--checkpoint.save_weights_only true keeps the best checkpoint without the optimizer state, "
            "--checkpoint.save_top_k N how many best ones are kept")
    return "\n".join([head, *lines, ckpt])

