"""`trident-audio` end to end on the debug config (fit, test, export, infer) and a 2-process DDP run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from trident_audio.cli import DOMAIN, main
from trident_audio.export import Transcriber
from trident_core.cli import run_domain

TESTS = Path(__file__).resolve().parents[1]  # holds ddp_probe.py


def _base(tmp_path: Path) -> list[str]:
    return ["--config", "debug", "--trainer.default_root_dir", str(tmp_path / "run"),
            "--data.data_dir", str(tmp_path / "data")]


def test_fit_test_export_infer_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["fit", *_base(tmp_path)])
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file() and (run / "artifact" / "model.onnx").is_file()
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["hyper_parameters"]["tokenizer"]["kind"] == "char"  # export needs no training data
    assert ckpt["trident"]["extras"]["lm"]["order"] == 2  # word LM of the training transcripts, as plain data
    assert "audio" not in ckpt and "lm_texts" not in ckpt["hyper_parameters"]  # the LM is an extra, not a config

    main(["test", *_base(tmp_path), "--ckpt_path", "last"])
    table = json.loads((run / "per_voice_wer.json").read_text())
    assert table and all({"voice", "words", "wer"} <= set(row) for row in table)

    capsys.readouterr()
    main(["export", "--ckpt_path", str(last), "--output", str(tmp_path / "artifact")])
    report = json.loads(capsys.readouterr().out)
    assert report["parity"]["onnx"]["max_abs_diff"] < 1e-4
    meta = json.loads((tmp_path / "artifact" / "metadata.json").read_text())["domain_metadata"]
    assert meta["task"] == "speech_recognition" and meta["lm_file"] == "lm.json" and meta["decoder"] == "beam"
    assert meta["sample_rate"] == meta["features"]["sample_rate"] == 16000

    # a checkpoint of the earlier layout (the LM under an 'audio' key, no version) is refused naming the version
    old = {k: v for k, v in ckpt.items() if k != "trident"} | {"audio": {"lm": json.dumps({"order": 2})}}
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(SystemExit):
        main(["export", "--ckpt_path", str(tmp_path / "old.ckpt"), "--output", str(tmp_path / "old-artifact")])
    assert "checkpoint version 1; this Trident reads version 2" in capsys.readouterr().err

    main(["infer", "--artifact", str(tmp_path / "artifact"), "--input", str(tmp_path / "data" / "test.jsonl"),
          "--batch_size", "1"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(rows) == 2 and all({"audio_filepath", "pred_text", "words", "text", "duration"} <= set(r) for r in rows)
    assert all(Path(r["audio_filepath"]).is_file() for r in rows)
    for row in rows:  # word times: ordered, inside the audio, one per predicted word
        times = [t for w in row["words"] for t in (w["start"], w["end"])]
        assert times == sorted(times) and all(0 <= t <= row["duration"] + 0.05 for t in times)
        assert [w["word"] for w in row["words"]] == row["pred_text"].split()

    out = tmp_path / "out"
    out.mkdir()
    main(["infer", "--artifact", str(tmp_path / "artifact"), "--input", str(tmp_path / "data" / "val"),
          "--output", str(out)])
    written = (out / "transcripts.jsonl").read_text().splitlines()
    assert len(written) == 2


@pytest.mark.slow  # > 20 s on 2 cores: the slow pass (issue 17: default pass < 15 min)
def test_data_sample_rate_reaches_the_net_the_checkpoint_and_the_artifact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--data.sample_rate 8000` is the one place the rate is declared: it is linked to the net's features, kept in
    the checkpoint's hyperparameters (so `export` rebuilds an 8 kHz net) and written to the artifact, and
    inference resamples 16 kHz input to it."""
    cli = run_domain(DOMAIN, ["fit", *_base(tmp_path), "--data.sample_rate", "8000"])
    assert cli is not None
    assert cli.model.net.sample_rate == cli.model.net.features.sample_rate == cli.datamodule.sample_rate == 8000
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["hyper_parameters"]["net"]["init_args"]["sample_rate"] == 8000

    capsys.readouterr()
    main(["export", "--ckpt_path", str(last), "--output", str(tmp_path / "artifact")])
    meta = json.loads((tmp_path / "artifact" / "metadata.json").read_text())["domain_metadata"]
    assert meta["sample_rate"] == meta["features"]["sample_rate"] == 8000

    wav = tmp_path / "in" / "a16k.wav"
    wav.parent.mkdir()
    t = np.arange(16000) / 16000
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    assert len(Transcriber(tmp_path / "artifact").read(wav)) == 8000  # one second at the model's 8 kHz
    main(["infer", "--artifact", str(tmp_path / "artifact"), "--input", str(wav), "--output", str(tmp_path / "out")])
    rows = [json.loads(line) for line in (tmp_path / "out").read_text().splitlines()]
    assert [r["audio_filepath"] for r in rows] == [str(wav)]


def test_python_module_entry_point_help() -> None:
    out = subprocess.run([sys.executable, "-m", "trident_audio", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "trident-audio" in out.stdout


@pytest.mark.slow  # > 20 s on 2 cores: the slow pass (issue 17: default pass < 15 min)
@pytest.mark.distributed
def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",  # ddp_probe
        "WANDB_MODE": "disabled",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "trident_audio", "fit", *_base(tmp_path), "--preset", "cpu_ddp2",
           "--trainer.limit_train_batches", "3", "--trainer.callbacks+=ddp_probe.AudioFilesProbe"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    probes = [json.loads((tmp_path / "run" / f"probe-rank{r}.json").read_text()) for r in (0, 1)]
    assert all(p["world"] == 2 for p in probes)
    assert probes[0]["weights"] == probes[1]["weights"]  # DDP kept both replicas identical
    shards = [set(p["seen"]) for p in probes]
    assert shards[0] and shards[1] and not shards[0] & shards[1]  # disjoint shards
    assert (tmp_path / "run" / "artifact" / "model.onnx").is_file()
