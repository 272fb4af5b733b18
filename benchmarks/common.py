"""Timing helpers: interleaved arms with warm-up and medians, per-arm peak RSS, result rows."""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Settings:
    """What every benchmark reads: quick mode (seconds, for the smoke test) and a scratch folder."""

    quick: bool
    workdir: Path
    threads: int

    def pick(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full


@dataclass
class Row:
    """One line of the table: what was compared, both numbers, the ratio and whether the target is met.

    ``ratio`` is always "how much better Trident is" for speed rows (baseline time / Trident time), except
    where ``ratio_def`` says otherwise (P1: Trident step time / plain loop step time).
    """

    id: str
    compare: str
    baseline_name: str
    baseline: float | None
    trident: float | None
    unit: str
    ratio: float | None
    ratio_def: str
    target: str
    met: bool | None
    command: str
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0), so the next arm gets its own peak."""
    gc.collect()
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process since the last :func:`reset_peak_rss`, in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def interleave(arms: dict[str, Callable[[], Any]], reps: int, warmup: int = 1) -> dict[str, dict[str, Any]]:
    """Time each arm ``reps`` times in the order A, B, A, B, ... after ``warmup`` untimed rounds.

    Returns per arm: ``median`` and ``times`` in seconds and ``rss_mb`` (largest peak RSS of one call).
    """
    for _ in range(warmup):
        for fn in arms.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in arms}
    rss: dict[str, float] = {name: 0.0 for name in arms}
    for _ in range(reps):
        for name, fn in arms.items():
            reset_peak_rss()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
            rss[name] = max(rss[name], peak_rss_mb() or 0.0)
    return {
        name: {"median": statistics.median(ts), "times": ts, "rss_mb": round(rss[name], 1)}
        for name, ts in times.items()
    }


def median(values: list[float]) -> float:
    return statistics.median(values)


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def speedup_row(row_id: str, compare: str, baseline_name: str, baseline_s: float, trident_s: float, unit: str,
                target: float | None, command: str, notes: str = "", scale: float = 1.0,
                extra: dict[str, Any] | None = None) -> Row:
    """A row where smaller is better on both sides and the ratio is baseline / Trident."""
    ratio = baseline_s / trident_s if trident_s > 0 else None
    return Row(
        id=row_id, compare=compare, baseline_name=baseline_name, baseline=round(baseline_s * scale, 4),
        trident=round(trident_s * scale, 4), unit=unit, ratio=None if ratio is None else round(ratio, 3),
        ratio_def="baseline / trident (higher is faster)", target=f">= {target}x" if target else "report",
        met=None if target is None or ratio is None else ratio >= target, command=command, notes=notes,
        extra=extra or {},
    )


def core_default_callbacks() -> str:
    """A ``--trainer.callbacks=`` value holding the core's default callbacks alone: it drops a recipe's
    EarlyStopping (the P2 arms run a fixed number of steps) and keeps what every Trident run has, so the Trident arm
    pays for the callbacks users get (``[]`` would remove those too)."""
    import json

    import yaml

    from trident_core.cli import CORE_DEFAULTS

    return json.dumps(yaml.safe_load(CORE_DEFAULTS.read_text(encoding="utf-8"))["trainer"]["callbacks"])
