"""Hostile files: a checkpoint that runs code when unpickled is refused everywhere, and the code never runs;
artifact metadata is validated before anything in the folder is used."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from toydomain import MLP, ToyModule, main
from trident_core.artifact import load_artifact
from trident_core.errors import ArtifactError, CheckpointError
from trident_core.export import export_artifact, load_checkpoint


class _Payload:
    """Unpickling this calls ``exec``: the classic malicious-checkpoint payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


def _evil_checkpoint(path: Path, marker: Path) -> Path:
    """A real Lightning-shaped checkpoint (torch zip format) with the payload inside."""
    module = ToyModule(net=MLP())
    torch.save({"state_dict": module.state_dict(), "global_step": 0, "pytorch-lightning_version": "2.6.6",
                "hyper_parameters": {"net": _Payload(marker)}}, path)
    return path


def _args(tmp_path: Path) -> list[str]:
    return ["--config", "debug", "--trainer.default_root_dir", str(tmp_path / "run"),
            "--data.data_dir", str(tmp_path / "data")]


def test_the_payload_really_runs_code_when_unpickled(tmp_path: Path) -> None:
    """The control: without weights_only the crafted file executes its payload."""
    marker = tmp_path / "pwned"
    torch.load(_evil_checkpoint(tmp_path / "evil.ckpt", marker), weights_only=False)
    assert marker.read_text() == "code ran"


def test_load_checkpoint_refuses_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(CheckpointError, match="refused by the safe loader"):
        load_checkpoint(_evil_checkpoint(tmp_path / "evil.ckpt", marker))
    assert not marker.exists()


def test_export_refuses_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    evil = _evil_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(evil), "--output", str(tmp_path / "artifact")])
    assert exit_info.value.code == 2
    assert "refused by the safe loader" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "artifact").exists()


@pytest.mark.parametrize("subcommand", ["fit", "validate", "test", "predict"])
def test_lightning_subcommands_refuse_code(tmp_path: Path, capsys: pytest.CaptureFixture[str], subcommand: str) -> None:
    marker = tmp_path / "pwned"
    evil = _evil_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(SystemExit):
        main([subcommand, *_args(tmp_path), "--ckpt_path", str(evil)])
    assert "refused by the safe loader" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "data").exists()  # refused before any data or training work


def test_resume_refuses_a_planted_last_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    _evil_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", marker)
    for ckpt in ("last", "best"):
        with pytest.raises(SystemExit):
            main(["fit", *_args(tmp_path), "--ckpt_path", ckpt])
        assert "refused by the safe loader" in capsys.readouterr().err
    assert not marker.exists()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifact") / "toy"
    export_artifact(ToyModule(net=MLP()).export_spec(), out, domain="toy")
    return out


def _tampered(artifact: Path, tmp_path: Path, change: dict[str, object], drop: str | None = None) -> Path:
    copy = tmp_path / "artifact"
    shutil.copytree(artifact, copy)
    meta = json.loads((copy / "metadata.json").read_text())
    meta.update(change)
    if drop:
        del meta[drop]
    (copy / "metadata.json").write_text(json.dumps(meta))
    return copy


@pytest.mark.parametrize(
    ("change", "drop", "message"),
    [
        ({"format_version": 99}, None, "format_version 99 is not supported"),
        ({"format_version": "1"}, None, "is not supported"),
        ({}, "inputs", "missing required key(s) ['inputs']"),
        ({}, "files", "missing required key(s) ['files']"),
        ({"files": {"onnx": "../../outside.onnx", "torch_export": "model.pt2", "weights": "weights.safetensors"}},
         None, "points outside the artifact folder"),
        ({"files": {"onnx": "/etc/passwd", "torch_export": "model.pt2", "weights": "weights.safetensors"}},
         None, "points outside the artifact folder"),
        ({"inputs": []}, None, "[inputs] must be a non-empty list"),
    ],
)
def test_artifact_metadata_is_validated_before_use(
    artifact: Path, tmp_path: Path, change: dict[str, object], drop: str | None, message: str
) -> None:
    with pytest.raises(ArtifactError) as err:
        load_artifact(_tampered(artifact, tmp_path, change, drop))
    assert message in str(err.value) and "metadata.json" in str(err.value)


def test_infer_cli_reports_a_tampered_artifact(artifact: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = _tampered(artifact, tmp_path, {"format_version": 2})
    torch.save({"x": torch.randn(4, 8)}, tmp_path / "inputs.pt")
    with pytest.raises(SystemExit) as exit_info:
        main(["infer", "--artifact", str(bad), "--input", str(tmp_path / "inputs.pt")])
    assert exit_info.value.code == 2
    assert "format_version 2 is not supported" in capsys.readouterr().err
