"""The export contract: parity on two shapes, a broken export fails cleanly, artifacts are validated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from trident_core.artifact import load_artifact
from trident_core.errors import ArtifactError, ExportError
from trident_core.export import ExportSpec, export_artifact


class TinySeq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(40, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.emb(ids) * mask.unsqueeze(-1)
        return self.head(h.sum(1) / mask.sum(1, keepdim=True).clamp(min=1))


class Drifting(nn.Module):
    """Deliberately broken for export: a Python-side counter that tracing bakes in as a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.lin(x) * self.calls


def _seq_spec(model: nn.Module) -> ExportSpec:
    axes = {"ids": {0: "batch", 1: "sequence"}, "mask": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}}
    examples = [(torch.randint(0, 40, (2, 5)), torch.ones(2, 5, dtype=torch.long)),
                (torch.randint(0, 40, (3, 9)), torch.ones(3, 9, dtype=torch.long))]
    return ExportSpec(model=model, example_inputs=examples, input_names=["ids", "mask"], output_names=["logits"],
                      dynamic_axes=axes, metadata={"labels": ["a", "b", "c", "d"]}, files={"vocab.txt": b"x\ny\n"})


def test_export_writes_contract_and_parity_holds(tmp_path: Path) -> None:
    model = TinySeq().eval()
    result = export_artifact(_seq_spec(model), tmp_path / "art", metrics={"val/acc": 0.5}, domain="toy")
    names = {p.name for p in (tmp_path / "art").iterdir()}
    assert {"model.onnx", "model.pt2", "weights.safetensors", "metadata.json", "vocab.txt"} <= names
    assert result.parity["onnx"]["max_abs_diff"] < 1e-4 and result.parity["torch_export"]["max_abs_diff"] < 1e-4
    assert len(result.parity["shapes"]) == 2
    meta = json.loads((tmp_path / "art" / "metadata.json").read_text())
    assert meta["inputs"][0] == {"name": "ids", "dtype": "int64", "shape": ["batch", "sequence"]}
    assert meta["metrics"] == {"val/acc": 0.5} and meta["versions"]["torch"].startswith("2.11")
    # a third, unseen shape runs through onnxruntime and matches eager
    art = load_artifact(tmp_path / "art")
    ids, mask = torch.randint(0, 40, (7, 13)), torch.ones(7, 13, dtype=torch.long)
    got = art.run({"ids": ids.numpy(), "mask": mask.numpy()})["logits"]
    np.testing.assert_allclose(got, model(ids, mask).detach().numpy(), atol=1e-4)
    # the weights file reloads into a fresh model
    from safetensors.torch import load_model

    fresh = TinySeq()
    load_model(fresh, str(tmp_path / "art" / "weights.safetensors"))
    torch.testing.assert_close(fresh.head.weight, model.head.weight)


def test_broken_export_fails_clearly_and_writes_nothing(tmp_path: Path) -> None:
    spec = ExportSpec(model=Drifting(), example_inputs=[(torch.randn(2, 4),), (torch.randn(3, 4),)],
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}}, metadata={})
    with pytest.raises(ExportError, match=r"parity check failed: .* output 'y' differs from eager PyTorch"):
        export_artifact(spec, tmp_path / "art")
    assert list(tmp_path.iterdir()) == []


def test_failed_export_keeps_the_previous_artifact(tmp_path: Path) -> None:
    export_artifact(_seq_spec(TinySeq().eval()), tmp_path / "art")
    before = (tmp_path / "art" / "metadata.json").read_text()
    broken = ExportSpec(model=Drifting(), example_inputs=[(torch.randn(2, 4),), (torch.randn(3, 4),)],
                        input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}}, metadata={})
    with pytest.raises(ExportError):
        export_artifact(broken, tmp_path / "art")
    assert (tmp_path / "art" / "metadata.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_export_needs_two_shapes(tmp_path: Path) -> None:
    spec = ExportSpec(model=nn.Linear(4, 2), example_inputs=[(torch.randn(2, 4),)], input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}}, metadata={})
    with pytest.raises(ExportError, match="at least two examples"):
        export_artifact(spec, tmp_path / "art")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("inputs"), r"missing required key\(s\) \['inputs'\]"),
        (lambda m: m.update(format_version=99), "format_version 99 is not supported"),
        (lambda m: m["files"].update(onnx="../../etc/passwd"), "points outside the artifact folder"),
        (lambda m: m.update(inputs=[]), r"\[inputs\] must be a non-empty list"),
    ],
)
def test_artifact_metadata_is_validated(tmp_path: Path, edit, message: str) -> None:
    export_artifact(_seq_spec(TinySeq().eval()), tmp_path / "art")
    path = tmp_path / "art" / "metadata.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=message):
        load_artifact(tmp_path / "art")


def test_artifact_errors_for_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="artifact folder not found"):
        load_artifact(tmp_path / "nowhere")
    export_artifact(_seq_spec(TinySeq().eval()), tmp_path / "art")
    (tmp_path / "art" / "metadata.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_artifact(tmp_path / "art")


def test_artifact_run_checks_input_names(tmp_path: Path) -> None:
    export_artifact(_seq_spec(TinySeq().eval()), tmp_path / "art")
    art = load_artifact(tmp_path / "art")
    with pytest.raises(ArtifactError, match="do not match the model's"):
        art.run({"ids": np.zeros((1, 3), dtype=np.int64)})
