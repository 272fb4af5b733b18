"""The seam's shared parts: DomainMetadata (writer and reader share one dataclass), write_jsonl (atomic, UTF-8),
and the checkpoint version check that `export` and `test` apply."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch import nn

from toydomain import MLP, ToyModule, main
from trident_core.artifact import load_artifact
from trident_core.errors import ArtifactError
from trident_core.export import ExportSpec, export_artifact
from trident_core.metadata import DomainMetadata
from trident_core.module import CHECKPOINT_VERSION
from trident_core.output import write_jsonl


@dataclass(frozen=True)
class ToyMetadata(DomainMetadata):
    TASK: ClassVar[str] = "toy_classification"
    labels: list[str]
    threshold: float | None = None


def _artifact(tmp_path: Path, metadata: dict) -> Path:
    spec = ExportSpec(model=nn.Linear(4, 2).eval(), example_inputs=[(torch.randn(2, 4),), (torch.randn(3, 4),)],
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                      metadata=metadata)
    return export_artifact(spec, tmp_path / "art", domain="toy").path


def test_metadata_round_trips_through_a_real_artifact(tmp_path: Path) -> None:
    written = ToyMetadata(labels=["café", "b"], threshold=0.25)
    assert written.to_dict() == {"task": "toy_classification", "labels": ["café", "b"], "threshold": 0.25}
    folder = _artifact(tmp_path, written.to_dict())
    assert ToyMetadata.from_artifact(load_artifact(folder)) == written
    assert ToyMetadata.from_dict({"task": "toy_classification", "labels": []}).threshold is None  # the default


@pytest.mark.parametrize(("raw", "message"), [
    ({"task": "toy_classification"}, r"\[domain_metadata\] missing \['labels'\] key\(s\) for ToyMetadata"),
    ({"task": "toy_classification", "labels": [], "colour": 1, "size": 2},
     r"\[domain_metadata\] unknown \['colour', 'size'\] key\(s\)"),
    ({"task": "toy_classification", "colour": 1},
     r"missing \['labels'\] and unknown \['colour'\] key\(s\)"),
    ({"task": "segmentation", "labels": []},
     r"\[domain_metadata.task\] is 'segmentation', this reader takes 'toy_classification'"),
    ({"labels": []}, r"\[domain_metadata.task\] is None"),
    (["labels"], r"\[domain_metadata\] must be an object, got list"),
])
def test_metadata_errors_name_the_file_and_the_keys(tmp_path: Path, raw: object, message: str) -> None:
    folder = _artifact(tmp_path, raw)  # type: ignore[arg-type]
    with pytest.raises(ArtifactError, match=message) as err:
        ToyMetadata.from_artifact(load_artifact(folder))
    assert str(err.value).startswith(str(folder / "metadata.json"))


def test_write_jsonl_keeps_non_ascii_and_takes_a_folder(tmp_path: Path) -> None:
    rows = [{"text": "café ñ 日本語", "label": "größe"}, {"text": "plain", "label": None}]
    target = write_jsonl(rows, tmp_path, "predictions.jsonl")
    assert target == tmp_path / "predictions.jsonl"
    raw = target.read_bytes().decode("utf-8")
    assert "café ñ 日本語" in raw and "\\u" not in raw  # written as UTF-8, not escaped
    assert [json.loads(line) for line in raw.splitlines()] == rows
    # a path ending with a separator is a folder, made when missing
    assert write_jsonl(rows, f"{tmp_path / 'new'}/", "out.jsonl") == tmp_path / "new" / "out.jsonl"
    assert write_jsonl(rows, tmp_path / "file.jsonl", "ignored.jsonl") == tmp_path / "file.jsonl"


def test_write_jsonl_failure_leaves_the_earlier_file_whole(tmp_path: Path) -> None:
    target = write_jsonl([{"n": 1}, {"n": 2}], tmp_path / "out.jsonl", "x.jsonl")
    before = target.read_bytes()

    def failing():
        yield {"n": 3}
        raise RuntimeError("the model failed on row 2")

    with pytest.raises(RuntimeError, match="row 2"):
        write_jsonl(failing(), target, "x.jsonl")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # no temporary file left behind
    with pytest.raises(TypeError):  # not JSON: the same
        write_jsonl([{"n": object()}], target, "x.jsonl")
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


@pytest.mark.parametrize("trident", [None, {"version": 1}, {"version": 3, "extras": {}}])
@pytest.mark.parametrize("subcommand", ["export", "test"])
def test_checkpoint_of_another_version_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  trident: dict | None, subcommand: str) -> None:
    ckpt = tmp_path / "old.ckpt"
    saved = {"state_dict": ToyModule(net=MLP()).state_dict(), "global_step": 0, "hyper_parameters": {}}
    if trident is not None:
        saved["trident"] = trident
    torch.save(saved, ckpt)
    args = ["--output", str(tmp_path / "art")] if subcommand == "export" else [
        "--config", "debug", "--trainer.default_root_dir", str(tmp_path / "run"), "--data.data_dir",
        str(tmp_path / "data")]
    with pytest.raises(SystemExit) as exit_info:
        main([subcommand, "--ckpt_path", str(ckpt), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    found = (trident or {}).get("version", 1)
    assert f"{ckpt}: Trident checkpoint version {found}; this Trident reads version {CHECKPOINT_VERSION}" in err
    assert "Traceback" not in err
    assert not (tmp_path / "art").exists() and not (tmp_path / "data").exists()  # refused before any work
