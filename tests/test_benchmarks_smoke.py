"""The benchmark runner works end to end in quick mode (no timing is asserted: timing lives in benchmarks/)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

# benchmarks/ is a top-level folder run as `python -m benchmarks` from the repository root, not an installed package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.runner import BENCHMARKS, main


@pytest.fixture
def restore_threads(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRIDENT_ORT_THREADS", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_runner_quick_writes_json_and_table(tmp_path: Path, restore_threads: None) -> None:
    result = main(["--quick", "--only", "P3,P7", "--out", str(tmp_path), "--machine", "smoke", "--threads", "1"])
    saved = json.loads((tmp_path / "smoke.json").read_text())
    table = (tmp_path / "smoke.md").read_text()
    assert saved["rows"] == result["rows"]
    ids = [row["id"] for row in saved["rows"]]
    assert ids.count("P3") == 2 and "P7" in ids
    for row in saved["rows"]:
        assert row["compare"] != "(failed)", row["notes"]
        if row["id"] == "P3":  # both numbers and the ratio
            assert row["baseline"] > 0 and row["trident"] > 0 and row["ratio"] > 0
    if not torch.cuda.is_available():
        assert "skipped" in next(r for r in saved["rows"] if r["id"] == "P7")["notes"]
    assert "| P3 |" in table and "Measured" in table


def test_runner_rejects_unknown_ids(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--only", "P99", "--out", str(tmp_path)])
    assert set(BENCHMARKS) >= {"P1", "P2", "P3", "P4", "P4b", "P5", "P6", "P7"}


@pytest.mark.slow  # four server starts and a quantization: minutes on a loaded 2-core machine
def test_runner_quick_serving_and_int8_rows(tmp_path: Path, restore_threads: None) -> None:
    result = main(["--quick", "--only", "P8,Q8", "--out", str(tmp_path), "--machine", "smoke", "--threads", "1"])
    rows = {(row["id"], row["compare"].split(",")[0]): row for row in result["rows"]}
    assert [row["id"] for row in result["rows"]] == ["P8", "P8", "Q8", "Q8"]
    for row in rows.values():
        assert row["compare"] != "(failed)", row["notes"]
        assert row["baseline"] > 0 and row["trident"] > 0 and row["ratio"] > 0
    for row in result["rows"][:2]:  # both arms served every request
        arms = row["extra"]["arms"]
        assert arms["batched"]["errors"] == 0 and arms["unbatched"]["errors"] == 0
        assert arms["batched"]["mean_batch"] > 1 and arms["unbatched"]["mean_batch"] == 1
    assert "agreement with the float artifact" in result["rows"][2]["notes"]
    assert "WER float" in result["rows"][3]["notes"]
