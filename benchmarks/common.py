"""Timing helpers: per-arm records, interleaved repetitions, per-arm peak RSS, result rows and their verdicts.

Every row holds its ``arms`` (what each side ran: precision, trainable parameters, batch, threads, data, the value
of every repetition, its median, min and max, and its peak RSS), the number of ``repetitions``, the ``spread``
(min and max of the per-repetition ratio) and a ``verdict``: ``met`` / ``missed`` only where the whole range of the
quantity the target is on lies on one side of it, ``within noise`` otherwise, ``report`` where there is no target.
:func:`check_row` states these rules; the smoke test applies it to every row of every group.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.timing import PeakRss, interleave, isolated_interleave, torch_threads

__all__ = ["Arm", "PeakRss", "Row", "Settings", "check_row", "interleave", "isolated_interleave", "make_row",
           "skipped_row", "timed_arm", "verdict"]

VERDICTS = ("met", "missed", "within noise", "report")
ARM_KEYS = ("name", "precision", "trainable_params", "batch", "threads", "data", "values", "median", "min", "max",
            "peak_rss_mb")


@dataclass
class Settings:
    """What every benchmark reads: quick mode (seconds, for the smoke test) and a scratch folder."""

    quick: bool
    workdir: Path
    threads: int

    def pick(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full


@dataclass
class Arm:
    """One side of a comparison: what it ran and the value of each repetition (in the row's unit)."""

    name: str
    precision: str
    values: list[float]
    data: str
    batch: int | None = None
    threads: int | None = None
    trainable_params: int | None = None
    peak_rss_mb: float | None = None

    def as_dict(self) -> dict[str, Any]:
        values = [round(v, 6) for v in self.values]
        return {"name": self.name, "precision": self.precision, "trainable_params": self.trainable_params,
                "batch": self.batch, "threads": self.threads if self.threads is not None else torch_threads(),
                "data": self.data, "values": values, "median": statistics.median(values) if values else None,
                "min": min(values, default=None), "max": max(values, default=None),
                "peak_rss_mb": None if self.peak_rss_mb is None else round(self.peak_rss_mb, 1)}


@dataclass
class Row:
    """One line of the table: the arms compared, the median ratio and its range, the target and the verdict.

    ``ratio`` is the median of the per-repetition ratios (``ratio_def`` says which way round); ``baseline`` and
    ``trident`` are the arms' medians. ``target_op``/``target_value`` apply to ``target_on``: the ratio, or the
    Trident arm's own value (an absolute target such as an RTF or a wall time), or ``difference``: Trident minus
    baseline per repetition (P1's own share in ms/step).
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
    arms: list[dict[str, Any]]
    repetitions: int
    spread: list[float] | None
    verdict: str
    target_op: str | None = None
    target_value: float | None = None
    target_on: str = "ratio"
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict(low: float, high: float, op: str | None, value: float | None) -> str:
    """``met``/``missed`` when the whole range ``[low, high]`` is on one side of the target, else ``within noise``."""
    if op is None or value is None:
        return "report"
    if op not in (">=", "<="):
        raise ValueError(f"target operator {op!r} is not '>=' or '<='")
    if (low >= value) if op == ">=" else (high <= value):
        return "met"
    if (high < value) if op == ">=" else (low > value):
        return "missed"
    return "within noise"


MET = {"met": True, "missed": False, "within noise": None, "report": None}


def make_row(row_id: str, compare: str, base: Arm, tri: Arm, unit: str, command: str, *,
             ratio: str = "baseline / trident", target: tuple[str, float] | None = None, target_on: str = "ratio",
             target_text: str | None = None, notes: str = "", extra: dict[str, Any] | None = None,
             more_arms: tuple[Arm, ...] = ()) -> Row:
    """A row from two arms whose values are paired by repetition (A, B interleaved, or the same seed).

    ``ratio`` is ``"baseline / trident"`` (times: higher is faster) or ``"trident / baseline"`` (throughputs, or
    P1's step-time ratio where lower is better)."""
    if len(base.values) != len(tri.values) or not base.values:
        raise ValueError(f"{row_id} {compare}: arms need the same number (>= 1) of repetitions, got "
                         f"{len(base.values)} and {len(tri.values)}")
    pairs = zip(base.values, tri.values, strict=True)
    ratios = [b / t if ratio == "baseline / trident" else t / b for b, t in pairs]
    spread = [round(min(ratios), 4), round(max(ratios), 4)]
    op, value = target if target else (None, None)
    on = _target_range(spread, base.values, tri.values, target_on)
    result = verdict(on[0], on[1], op, value)
    faster = "higher is faster" if ratio == "baseline / trident" else "see the row"
    return Row(id=row_id, compare=compare, baseline_name=base.name, baseline=round(statistics.median(base.values), 6),
               trident=round(statistics.median(tri.values), 6), unit=unit,
               ratio=round(statistics.median(ratios), 4), ratio_def=f"{ratio} ({faster})",
               target=target_text or (f"{'ratio' if target_on == 'ratio' else unit} {op} {value}" if target else
                                      "report"),
               met=MET[result], command=command, arms=[a.as_dict() for a in (base, tri, *more_arms)],
               repetitions=len(ratios), spread=spread, verdict=result, target_op=op, target_value=value,
               target_on=target_on, notes=notes, extra={**(extra or {}), "ratios": [round(r, 4) for r in ratios]})


def _target_range(spread: list[float], base: list[float], tri: list[float], on: str) -> list[float]:
    """The range a target is judged on: the ratio's, the Trident arm's values, or trident - baseline per rep."""
    if on == "ratio":
        return spread
    if on == "trident":
        return [min(tri), max(tri)]
    if on == "difference":
        diffs = [t - b for b, t in zip(base, tri, strict=True)]
        return [min(diffs), max(diffs)]
    raise ValueError(f"target_on {on!r} is not 'ratio', 'trident' or 'difference'")


def skipped_row(row_id: str, compare: str, command: str, reason: str) -> Row:
    """A row that did not run here (e.g. GPU-only): no arms, verdict ``report``, the reason in the notes."""
    return Row(id=row_id, compare=compare, baseline_name="", baseline=None, trident=None, unit="", ratio=None,
               ratio_def="", target="report", met=None, command=command, arms=[], repetitions=0, spread=None,
               verdict="report", notes=f"skipped: {reason}")


def check_row(row: dict[str, Any]) -> list[str]:
    """What is wrong with one row of the JSON (empty when it follows the rules in this module's docstring)."""
    name = f"{row.get('id')} {row.get('compare')!r}"
    missing = [k for k in ("arms", "repetitions", "spread", "verdict", "met", "target_op", "target_value",
                           "target_on") if k not in row]
    if missing:
        return [f"{name}: missing {missing}"]
    if row["verdict"] not in VERDICTS:
        return [f"{name}: verdict {row['verdict']!r} not in {VERDICTS}"]
    if row["met"] is not MET[row["verdict"]]:
        return [f"{name}: met {row['met']} disagrees with verdict {row['verdict']!r}"]
    if not row["arms"]:
        ok = row["verdict"] == "report" and str(row.get("notes", "")).startswith("skipped")
        return [] if ok else [f"{name}: no arms (only a 'skipped: ...' report row may have none)"]
    problems = []
    if len(row["arms"]) < 2:
        problems.append(f"{name}: fewer than two arms")
    for arm in row["arms"]:
        lacking = [k for k in ARM_KEYS if k not in arm]
        if lacking:
            problems.append(f"{name}: arm {arm.get('name')!r} lacks {lacking}")
            continue
        if not arm["precision"] or len(arm["values"]) != row["repetitions"]:
            problems.append(f"{name}: arm {arm['name']!r} has no precision or {len(arm['values'])} values for "
                            f"{row['repetitions']} repetitions")
        elif arm["values"] and not arm["min"] <= arm["median"] <= arm["max"]:
            problems.append(f"{name}: arm {arm['name']!r} median outside [min, max]")
    spread = row["spread"]
    if not spread or len(spread) != 2 or row["ratio"] is None or not (
            spread[0] - 1e-6 <= row["ratio"] <= spread[1] + 1e-6):
        problems.append(f"{name}: spread {spread} does not hold the ratio {row['ratio']}")
        return problems
    on = _target_range(spread, row["arms"][0]["values"], row["arms"][1]["values"], row["target_on"])
    want = verdict(on[0], on[1], row["target_op"], row["target_value"])
    if row["verdict"] != want:
        problems.append(f"{name}: verdict {row['verdict']!r} but the range {on} against "
                        f"{row['target_op']} {row['target_value']} gives {want!r}")
    return problems


def timed_arm(timed: dict[str, dict[str, Any]], key: str, name: str, scale: float = 1.0, **what: Any) -> Arm:
    """An :class:`Arm` from one entry of :func:`interleave`'s result, values scaled to the row's unit."""
    return Arm(name=name, values=[t * scale for t in timed[key]["times"]], peak_rss_mb=timed[key]["rss_mb"], **what)


def first_reached(evals: list[tuple[float, float]], target: float) -> tuple[float, bool]:
    """Seconds to the first evaluation at or above ``target`` and True; else the time the arm ran (a lower bound)
    and False."""
    hit = next((t for t, value in evals if value >= target), None)
    return (hit, True) if hit is not None else (evals[-1][0] if evals else float("nan"), False)


def trainable(module: Any) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def core_default_callbacks() -> str:
    """A ``--trainer.callbacks=`` value holding the core's default callbacks alone: it drops a recipe's
    EarlyStopping (the P2 arms run a fixed number of steps) and keeps what every Trident run has, so the Trident arm
    pays for the callbacks users get (``[]`` would remove those too)."""
    import json

    import yaml

    from trident_core.cli import CORE_DEFAULTS

    return json.dumps(yaml.safe_load(CORE_DEFAULTS.read_text(encoding="utf-8"))["trainer"]["callbacks"])
