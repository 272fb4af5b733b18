"""`trident-nlp fit --model.compile true`: a real domain trains through torch.compile (Inductor) and exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from nlp_fixtures import one_thread  # noqa: F401 (fixture)

from trident_core.cli import run_domain
from trident_core.compile import is_compiled
from trident_nlp.cli import DOMAIN


@pytest.mark.slow  # Inductor builds C++ kernels: minutes on 2 loaded cores
@pytest.mark.usefixtures("one_thread")
def test_nlp_debug_fit_compiled_with_inductor(tmp_path: Path) -> None:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    cli = run_domain(DOMAIN, ["fit", "--config", "debug", "--trainer.default_root_dir", str(tmp_path / "run"),
                              "--data.data_dir", str(tmp_path / "data"), "--model.compile", "true"])
    assert is_compiled(cli.model.net.encoder)  # no fallback: Inductor compiled and ran the encoder
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    assert cli.trainer.global_step == 4 and torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert not any("_orig_mod" in key for key in ckpt["state_dict"])
    assert set(ckpt["state_dict"]) == set(cli.model.state_dict())
    meta = json.loads((tmp_path / "run" / "artifact" / "metadata.json").read_text())
    assert meta["parity"]["onnx"]["max_abs_diff"] < 1e-4
