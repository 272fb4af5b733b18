"""`trident-nlp` end to end on the debug config: fit, test, export, infer; and a 2-process DDP run."""

from __future__ import annotations

import json
import math
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from nlp_fixtures import one_thread  # noqa: F401 (fixture)

from trident_nlp.cli import main

TESTS = Path(__file__).resolve().parents[1]  # holds ddp_probe.py

pytestmark = pytest.mark.usefixtures("one_thread")


def _base(tmp_path: Path) -> list[str]:
    return [
        "--config",
        "debug",
        "--trainer.default_root_dir",
        str(tmp_path / "run"),
        "--data.data_dir",
        str(tmp_path / "data"),
    ]


def test_fit_test_export_infer_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["fit", *_base(tmp_path)])
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file() and (run / "artifact" / "model.onnx").is_file()
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["trident_nlp"]["tokenizer_json"] and "tokenizer_json" not in ckpt["hyper_parameters"]
    threshold = float(ckpt["state_dict"]["oos_threshold"])
    meta = json.loads((run / "artifact" / "metadata.json").read_text())
    assert meta["domain"] == "nlp" and "oos" in meta["domain_metadata"]["labels"]

    cli = main(["test", *_base(tmp_path), "--ckpt_path", "last"])
    del cli
    assert (run / "test_report.json").is_file() and (run / "confusion_matrix.png").is_file()

    capsys.readouterr()
    main(["export", "--ckpt_path", str(last), "--output", str(tmp_path / "artifact")])
    report = json.loads(capsys.readouterr().out)
    assert report["parity"]["onnx"]["max_abs_diff"] < 1e-4
    exported = json.loads((tmp_path / "artifact" / "metadata.json").read_text())["domain_metadata"]
    # chosen on validation, stored in the checkpoint, exported (-inf, "reject nothing", is exported as null)
    assert exported["threshold"] == (pytest.approx(threshold) if math.isfinite(threshold) else None)

    inputs = tmp_path / "in.txt"
    inputs.write_text("where is my order\ni forgot my password\n")
    main(["predict", *_base(tmp_path), "--ckpt_path", "last", "--data.predict_file", str(inputs)])
    predicted = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert [r["text"] for r in predicted] == ["where is my order", "i forgot my password"]
    main(["infer", "--artifact", str(tmp_path / "artifact"), "--input", str(inputs), "--batch_size", "1"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["text"] for r in rows] == ["where is my order", "i forgot my password"]
    assert all(set(r) == {"text", "intent", "confidence", "in_scope"} for r in rows)


def test_python_module_entry_point_help(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["trident_nlp", "--help"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("trident_nlp", run_name="__main__")
    assert info.value.code == 0 and "trident-nlp" in capsys.readouterr().out


@pytest.mark.distributed
def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",  # ddp_probe
        "WANDB_MODE": "disabled",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "trident_nlp",
        "fit",
        *_base(tmp_path),
        "--preset",
        "cpu_ddp2",
        "--trainer.callbacks+=ddp_probe.TokenRowsProbe",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    probes = [json.loads((tmp_path / "run" / f"probe-rank{r}.json").read_text()) for r in (0, 1)]
    assert all(p["world"] == 2 for p in probes)
    assert probes[0]["weights"] == probes[1]["weights"]  # DDP kept both replicas identical
    shards = [{tuple(row) for row in p["seen"]} for p in probes]
    assert shards[0] and shards[1] and not shards[0] & shards[1]  # disjoint shards
    assert (tmp_path / "run" / "artifact" / "model.onnx").is_file()
