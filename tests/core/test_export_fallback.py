"""The ONNX export falls back to the TorchScript exporter when the dynamo exporter cannot translate the model, and
an artifact loads for inference without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from trident_core.artifact import load_artifact
from trident_core.errors import ExportError
from trident_core.export import ExportSpec, export_artifact


# Two custom ops (real torch.library ops, no mock): torch.export keeps them opaque, so the dynamo ONNX exporter has
# no translation for either; only the first has a TorchScript symbolic (an ONNX Relu).
@torch.library.custom_op("trident_test::relu_with_symbolic", mutates_args=())
def relu_with_symbolic(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_min(0.0)


@torch.library.custom_op("trident_test::relu_without_symbolic", mutates_args=())
def relu_without_symbolic(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_min(0.0)


for _op in (relu_with_symbolic, relu_without_symbolic):
    _op.register_fake(lambda x: torch.empty_like(x))
torch.onnx.register_custom_op_symbolic("trident_test::relu_with_symbolic", lambda g, x: g.op("Relu", x), 17)


class CustomOpNet(nn.Module):
    def __init__(self, op) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(self.lin(x))


def _spec(op) -> ExportSpec:
    torch.manual_seed(0)
    return ExportSpec(model=CustomOpNet(op).eval(), example_inputs=[(torch.randn(2, 4),), (torch.randn(5, 4),)],
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                      metadata={})


def test_torchscript_exporter_is_the_fallback_when_dynamo_cannot_translate(tmp_path: Path) -> None:
    spec = _spec(relu_with_symbolic)
    result = export_artifact(spec, tmp_path / "art")
    assert result.parity["onnx_exporter"] == "torchscript"
    assert result.parity["onnx"]["passed"] and result.parity["onnx"]["max_abs_diff"] < 1e-5
    meta = json.loads((tmp_path / "art" / "metadata.json").read_text())
    assert meta["parity"]["onnx_exporter"] == "torchscript"
    x = torch.randn(7, 4)  # a batch size neither example had: the dynamic axis survived the fallback
    got = load_artifact(tmp_path / "art").run({"x": x.numpy()})["y"]
    with torch.no_grad():
        want = spec.model(x).numpy()
    assert (want == 0).any() and np.abs(got - want).max() < 1e-5  # the op's clamp is in the graph


def test_no_exporter_left_is_an_error_naming_both_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as info:
        export_artifact(_spec(relu_without_symbolic), tmp_path / "art")
    assert "dynamo exporter:" in str(info.value) and "torchscript exporter:" in str(info.value)
    assert not (tmp_path / "art").exists() and not list(tmp_path.glob(".art.*"))


def test_load_artifact_imports_no_torch(tmp_path: Path) -> None:
    """Serving needs onnxruntime and numpy only: loading and running an artifact must not import torch."""
    export_artifact(_spec(relu_with_symbolic), tmp_path / "art")
    code = ("import sys, numpy as np\nfrom trident_core.artifact import load_artifact\n"
            f"out = load_artifact({str(tmp_path / 'art')!r}).run({{'x': np.ones((3, 4), np.float32)}})['y']\n"
            "assert out.shape == (3, 3), out.shape\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'lightning', 'pytorch_lightning'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]", f"imported with load_artifact: {done.stdout.strip()}"
