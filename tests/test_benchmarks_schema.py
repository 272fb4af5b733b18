"""The benchmark rows' rules (benchmarks/common.py): verdicts from ranges, per-arm peak RSS, the JSON schema check."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import Arm, PeakRss, check_row, interleave, make_row, skipped_row, verdict


@pytest.mark.parametrize(("low", "high", "op", "value", "want"), [
    (1.6, 2.2, ">=", 1.5, "met"), (1.1, 1.4, ">=", 1.5, "missed"), (1.94, 2.26, ">=", 2.0, "within noise"),
    (0.98, 1.02, "<=", 1.03, "met"), (1.05, 1.2, "<=", 1.03, "missed"), (1.0, 1.05, "<=", 1.03, "within noise"),
    (1.0, 2.0, None, None, "report"),
])
def test_verdict_needs_the_whole_range_on_one_side(low: float, high: float, op: str | None, value: float | None,
                                                   want: str) -> None:
    assert verdict(low, high, op, value) == want


def _row(base: list[float], tri: list[float], target: tuple[str, float] | None = (">=", 2.0)) -> dict:
    return make_row("PX", "x", Arm("b", "fp32", base, "d", batch=1, threads=1),
                    Arm("t", "fp32", tri, "d", batch=1, threads=1), "s", "cmd",
                    target=target).as_dict()


def test_make_row_pairs_repetitions_and_checks_clean() -> None:
    row = _row([2.0, 2.2, 2.26], [1.0, 1.0, 1.0])  # P3 batch 1 of the issue: ratios 2.0 .. 2.26 -> met
    assert row["spread"] == [2.0, 2.26] and row["ratio"] == 2.2 and row["verdict"] == "met" and row["met"] is True
    assert check_row(row) == []
    noisy = _row([1.94, 2.26, 2.005], [1.0, 1.0, 1.0])
    assert noisy["verdict"] == "within noise" and noisy["met"] is None and check_row(noisy) == []
    assert [a["median"] for a in noisy["arms"]] == [2.005, 1.0] and noisy["arms"][0]["min"] == 1.94


def test_check_row_rejects_rows_that_skip_the_rules() -> None:
    row = _row([1.94, 2.26, 2.005], [1.0, 1.0, 1.0])
    assert check_row({k: v for k, v in row.items() if k != "arms"})  # no arms
    assert check_row({**row, "verdict": "met", "met": True})  # range 1.94..2.26 straddles 2.0: not "met"
    assert check_row({**row, "met": True})  # met disagrees with "within noise"
    assert check_row({**row, "arms": [{k: v for k, v in a.items() if k != "precision"} for a in row["arms"]]})
    assert check_row({**row, "repetitions": 5})  # values per arm != repetitions
    assert check_row({**row, "spread": [2.1, 2.3]})  # the ratio outside its range
    assert check_row(skipped_row("P7", "gpu", "cmd", "no CUDA").as_dict()) == []
    assert check_row({**skipped_row("P7", "gpu", "cmd", "x").as_dict(), "notes": "ran"})


def test_make_row_refuses_unpaired_arms() -> None:
    with pytest.raises(ValueError, match="same number"):
        _row([1.0, 2.0], [1.0])


def test_peak_rss_is_per_arm() -> None:
    """An arm holding 300 MiB and one holding 1 MiB get different peaks; the old reset (clear_refs + VmHWM) gave
    the second arm the first one's peak."""
    def big() -> None:
        block = np.ones(300 * 2**20 // 8)
        assert block.sum() > 0

    def small() -> None:
        block = np.ones(2**20 // 8)
        assert block.sum() > 0

    timed = interleave({"big": big, "small": small}, reps=2, warmup=0)
    assert timed["big"]["rss_mb"] - timed["small"]["rss_mb"] > 200, timed
    with PeakRss() as peak:
        small()
    assert peak.peak < timed["big"]["rss_mb"] - 200


_KEPT: list[np.ndarray] = []


def hold(mib: int) -> object:
    """An arm factory (benchmarks.common.isolated_interleave) that keeps ``mib`` MiB alive, as a loaded model does."""
    _KEPT.append(np.ones(mib * 2**20 // 8))
    return lambda: float(_KEPT[-1][:10].sum())


def test_isolated_arms_report_their_own_peak_rss() -> None:
    """Each arm in its own process: an arm holding 300 MiB peaks >= 250 MiB above one holding 1 MiB. In one process
    (the controls: sampling, and the old clear_refs + VmHWM reset) the small arm, timed after the big one was built,
    reports the big one's memory too."""
    from benchmarks.common import isolated_interleave

    me = "tests.test_benchmarks_schema:hold"
    timed = isolated_interleave({"big": (me, {"mib": 300}), "small": (me, {"mib": 1})}, reps=3, threads=1)
    assert timed["big"]["rss_mb"] - timed["small"]["rss_mb"] > 250, timed
    assert len(timed["big"]["times"]) == 3
    shared = interleave({"big": hold(300), "small": hold(1)}, reps=2, warmup=0)
    assert abs(shared["big"]["rss_mb"] - shared["small"]["rss_mb"]) < 50, shared
    old = {}  # the previous per-arm reset: /proc/self/clear_refs "5", then VmHWM, in one process
    for name, fn in shared_arms(300, 1).items():
        Path("/proc/self/clear_refs").write_text("5")
        fn()
        old[name] = _vm_hwm_mb()
    assert abs(old["big"] - old["small"]) < 50, old


def shared_arms(big: int, small: int) -> dict:
    return {"big": hold(big), "small": hold(small)}


def _vm_hwm_mb() -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def test_first_reached_is_a_lower_bound_when_missed() -> None:
    from benchmarks.common import first_reached

    evals = [(10.0, 0.6), (20.0, 0.76), (30.0, 0.79)]
    assert first_reached(evals, 0.75) == (20.0, True)
    assert first_reached(evals, 0.80) == (30.0, False)  # never reached: the time it ran
