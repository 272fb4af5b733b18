"""`--model.compile`: torch.compile of the TaskModule's network, plain checkpoints, eager export, eager fallback."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from toydomain import DOMAIN, LossCurve
from trident_core.cli import run_domain
from trident_core.compile import is_compiled

# aot_eager: Dynamo and AOTAutograd as with Inductor, without the C++ build (minutes on 2 loaded cores); the
# Inductor fit of a real domain is in the slow pass
FAST = "{backend: aot_eager}"


def _fit(tmp_path: Path, name: str, *extra: str):
    return run_domain(DOMAIN, [
        "fit", "--config", "debug", "--trainer.default_root_dir", str(tmp_path / name),
        "--data.data_dir", str(tmp_path / "data"), "--trainer.callbacks+=toydomain.LossCurve", *extra,
    ])


def _curve(cli) -> list[float]:
    return next(cb for cb in cli.trainer.callbacks if isinstance(cb, LossCurve)).losses


def test_compiled_fit_matches_eager_and_keeps_plain_weights(tmp_path: Path) -> None:
    eager = _fit(tmp_path, "eager")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = _fit(tmp_path, "compiled", "--model.compile", FAST)
    assert is_compiled(compiled.model.net) and not is_compiled(eager.model.net)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # Dynamo really traced the network
    a, b = _curve(eager), _curve(compiled)
    assert len(a) == len(b) == 32
    assert torch.allclose(torch.tensor(a), torch.tensor(b), rtol=1e-4, atol=1e-5), (a, b)
    assert b[-1] < 0.5 * b[0]  # it learned
    # the checkpoint holds the plain network: no `_orig_mod.` keys, loadable into an eager module
    ckpt = torch.load(tmp_path / "compiled" / "checkpoints" / "last.ckpt", weights_only=True)
    assert set(ckpt["state_dict"]) == set(eager.model.state_dict())
    assert ckpt["hyper_parameters"]["compile"] == {"backend": "aot_eager"}
    # the artifact written at fit end traced the eager network and matches it
    meta = json.loads((tmp_path / "compiled" / "artifact" / "metadata.json").read_text())
    assert meta["parity"]["onnx"]["max_abs_diff"] < 1e-4
    assert is_compiled(compiled.model.net)  # still compiled after the export
    # evaluation from the checkpoint compiles too and gives the fit's numbers
    test = run_domain(DOMAIN, ["test", "--config", "debug", "--trainer.default_root_dir", str(tmp_path / "compiled"),
                               "--data.data_dir", str(tmp_path / "data"), "--ckpt_path", "last"])
    assert is_compiled(test.model.net)
    assert float(test.trainer.callback_metrics["test/acc"]) > 0.9


def test_failed_compilation_warns_and_trains_eagerly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    @torch._dynamo.register_backend(name="trident_test_broken")
    def broken(gm, example_inputs):  # a backend that cannot build, as Inductor without a C++ compiler
        raise RuntimeError("no C++ compiler found")

    torch._dynamo.reset()
    with caplog.at_level(logging.WARNING, logger="trident_core.compile"):
        cli = _fit(tmp_path, "broken", "--model.compile", "{backend: trident_test_broken}")
    warnings = [r.getMessage() for r in caplog.records if r.name == "trident_core.compile"]
    assert len(warnings) == 1, warnings
    assert "torch.compile of MLP failed" in warnings[0] and "no C++ compiler found" in warnings[0]
    assert "--model.compile false" in warnings[0]
    assert not is_compiled(cli.model.net)  # eager from then on
    assert float(cli.trainer.callback_metrics["val/acc"]) > 0.9
    assert len(_curve(cli)) == 32  # no step was lost to the failure


def test_unknown_backend_warns_at_setup(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="trident_core.compile"):
        cli = _fit(tmp_path, "nope", "--model.compile", "{backend: no_such_backend}", "--trainer.max_epochs", "1")
    assert any("no_such_backend" in r.getMessage() for r in caplog.records)
    assert not is_compiled(cli.model.net) and cli.trainer.global_step == 16


def test_unknown_compile_option_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_domain(DOMAIN, ["fit", "--config", "debug", "--model.compile", "{mod: max-autotune}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "model.compile: unknown torch.compile option(s) ['mod']" in err and "'mode'" in err


def test_eager_block_runs_the_plain_modules() -> None:
    from toydomain import MLP
    from trident_core.compile import compile_in_place, eager

    net = MLP()
    assert compile_in_place(net, {"backend": "eager"}) and is_compiled(net)
    with eager(net):
        assert not any(is_compiled(m) for m in net.modules())
    assert is_compiled(net)
