"""Reads a W&B offline run file (``run-<id>.wandb``): a LevelDB-style log of protobuf records.

The Python reader left the wandb package when its core moved to Go, so the tests read the format directly.
"""

from __future__ import annotations

from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

_HEADER = 7  # ":W&B" + 2-byte magic + 1-byte version
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path: str | Path) -> list[pb.Record]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    records: list[pb.Record] = []
    pos, pending = _HEADER, b""
    while pos + 7 <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < 7:
            pos += left_in_block
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        if kind in (_FULL, _FIRST):
            pending = chunk
        else:
            pending += chunk
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def summarize(path: str | Path) -> dict[str, set[str]]:
    """Logged history keys, config keys and artifact names of a run file."""
    out: dict[str, set[str]] = {"history": set(), "config": set(), "artifacts": set(), "run_ids": set()}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            out["history"] |= {item.key or "/".join(item.nested_key) for item in record.history.item}
        elif kind == "config":
            out["config"] |= {item.key or "/".join(item.nested_key) for item in record.config.update}
        elif kind == "artifact":
            out["artifacts"].add(f"{record.artifact.type}:{record.artifact.name}")
        elif kind == "run":
            out["run_ids"].add(record.run.run_id)
    return out


def wait_for_exit(path: str | Path, timeout: float = 90.0) -> Path:
    """Wait until W&B's service has written the run's final ``exit`` record (it flushes asynchronously)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            if any(r.WhichOneof("record_type") == "exit" for r in read_records(path)):
                return Path(path)
        except Exception:  # a record half-written at this instant; read again
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: W&B wrote no exit record within {timeout:.0f}s")
        time.sleep(0.5)


def wait_for_history(path: str | Path, keys: set[str], timeout: float = 60.0) -> dict[str, set[str]]:
    """Wait until the run file holds history records with every key in ``keys``; returns its summary.

    For runs that end without an ``exit`` record: when ``finish_timeout`` expires (the server is gone), W&B may
    stop before writing it, but the history it already received is on disk.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            summary = summarize(path)
            if keys <= summary["history"]:
                return summary
        except Exception:  # a record half-written at this instant; read again
            summary = {"history": set()}
        if time.monotonic() > deadline:
            missing = sorted(keys - summary["history"])
            raise AssertionError(f"{path}: history keys {missing} missing after {timeout:.0f}s")
        time.sleep(0.5)


def artifact_manifests(path: str | Path) -> dict[str, list[list[dict[str, object]]]]:
    """The manifest of every artifact a run file logged, by artifact name (one list per logged version): each entry's
    ``path`` in the artifact, ``local_path`` (the file W&B uploads, now or at ``wandb sync``), ``size`` and ``digest``
    (MD5, base64)."""
    out: dict[str, list[list[dict[str, object]]]] = {}
    for record in read_records(path):
        if record.WhichOneof("record_type") != "artifact":
            continue
        entries = [{"path": e.path, "local_path": e.local_path, "size": e.size, "skip_cache": e.skip_cache,
                    "digest": e.digest}
                   for e in record.artifact.manifest.contents]
        out.setdefault(record.artifact.name, []).append(entries)
    return out
