"""Writing inference results: the one JSONL writer every domain's ``infer`` uses (light: no torch)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def jsonl_target(output: str | Path, default_name: str) -> Path:
    """Where ``--output`` puts a JSONL file: the path itself, or ``default_name`` inside an existing folder (or a
    path that ends with a separator)."""
    text = str(output)
    target = Path(output)
    if target.is_dir() or text.endswith(("/", os.sep)):
        target = target / default_name
    return target


def write_text_atomic(target: str | Path, text: str) -> Path:
    """Write ``text`` to ``target`` through a temporary sibling and a rename: a reader never sees half a file, and
    an earlier file stays whole until the new one is complete. Returns ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_jsonl(rows: Iterable[dict[str, Any]], output: str | Path, default_name: str) -> Path:
    """Write one JSON object per line to ``output`` (see :func:`jsonl_target`) with :func:`write_text_atomic`.
    Returns the file written."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return write_text_atomic(jsonl_target(output, default_name), text)
