"""The benchmark runner works end to end in quick mode, and every row of every group follows the row rules
(benchmarks/common.py check_row: arms with precision, repetitions, spread, a verdict consistent with its range).
No timing is asserted: timing lives in benchmarks/."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

# benchmarks/ is a top-level folder run as `python -m benchmarks` from the repository root, not an installed package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import check_row
from benchmarks.runner import BENCHMARKS, main

# every group the runner knows, each checked in quick mode below (P7 in the fast test: it skips without CUDA)
SLOW_GROUPS = ["P1", "P2", "P3", "P4", "P4b", "P5", "P6", "P8", "Q8", "P9", "LOAD"]


@pytest.fixture
def restore_threads(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRIDENT_ORT_THREADS", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _quick(tmp_path: Path, only: str) -> dict:
    result = main(["--quick", "--only", only, "--out", str(tmp_path), "--machine", "smoke", "--threads", "1"])
    saved = json.loads((tmp_path / "smoke.json").read_text())
    assert saved["rows"] == result["rows"]
    for row in saved["rows"]:
        assert row["compare"] != "(failed)", row["notes"]
        assert check_row(row) == [], check_row(row)
    return saved


def test_every_group_is_schema_checked() -> None:
    assert set(BENCHMARKS) == {*SLOW_GROUPS, "P7"}


def test_runner_quick_writes_json_and_table(tmp_path: Path, restore_threads: None) -> None:
    saved = _quick(tmp_path, "P7")
    table = (tmp_path / "smoke.md").read_text()
    if not torch.cuda.is_available():
        assert saved["rows"][0]["notes"].startswith("skipped")
    assert "| P7 |" in table and "Measured" in table and "verdict" in table


def test_runner_rejects_unknown_ids(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--only", "P99", "--out", str(tmp_path)])


@pytest.mark.slow  # each group trains, exports or starts processes: minutes on a loaded 2-core machine
@pytest.mark.parametrize("group", SLOW_GROUPS)
def test_runner_quick_rows_follow_the_rules(group: str, tmp_path: Path, restore_threads: None) -> None:
    saved = _quick(tmp_path, group)
    rows = saved["rows"]
    assert rows and all(row["id"] == group for row in rows)
    for row in rows:
        assert all(arm["values"] for arm in row["arms"]), row
        # peak RSS per arm on every row, time-to-target and P9 included (issue 16)
        assert all(arm["peak_rss_mb"] is not None for arm in row["arms"]), row
    if group == "P8":
        for row in rows:
            for rounds in row["extra"]["rounds"].values():
                assert all(r["errors"] == 0 for r in rounds)
            assert row["arms"][1]["batch"] == 32
    if group == "P5":
        assert any("beam" in row["compare"] for row in rows)
    table = (tmp_path / "smoke.md").read_text()
    assert f"| {group} |" in table
