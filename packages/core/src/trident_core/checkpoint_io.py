"""Checkpoint writes that a kill, a power cut or a full disk cannot leave half-done."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO``, but every local save is written next to its target and renamed.

    Lightning's own save goes through an fsspec transaction whose temporary file lives in ``$TMPDIR``; when
    that is another filesystem (tmpfs, a node-local disk) the final step is a copy, and a kill during the
    copy leaves a truncated checkpoint. Here the bytes go to ``.<name>.tmp-<pid>`` in the target folder, are
    flushed to disk (``fsync``) and renamed over the target with ``os.replace``, which is atomic on POSIX:
    a reader sees the old checkpoint or the new one, never part of one. Remote URLs keep Lightning's path.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)
            return
        target = Path(str(path).removeprefix("file://"))
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)  # serialise first: a failure here touches no file
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                f.write(buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (the directory entry); not every filesystem supports it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
