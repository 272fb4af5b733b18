"""NonFiniteGuard: a NaN loss never reaches the weights; skip or stop by config, with the step named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from toydomain import DOMAIN, main
from trident_core.cli import run_domain


def _args(tmp_path: Path) -> list[str]:
    return ["fit", "--config", "debug", "--trainer.default_root_dir", str(tmp_path / "run"),
            "--data.data_dir", str(tmp_path / "data"), "--model.nan_at_step", "3"]


def test_skip_keeps_weights_finite_and_training_going(tmp_path: Path) -> None:
    cli = run_domain(DOMAIN, _args(tmp_path))
    guard = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "NonFiniteGuard")
    assert guard.skipped == 1
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())
    assert cli.trainer.global_step == 32  # the skipped step still counts; the run went on
    assert float(cli.trainer.callback_metrics["val/acc"]) > 0.9


def test_stop_names_the_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([*_args(tmp_path), "--non_finite.action", "stop"])
    err = capsys.readouterr().err
    assert "non-finite loss or gradient at step 3" in err and "gradient clipping" in err
    # the exception left a checkpoint behind, with finite weights
    saved = torch.load(tmp_path / "run" / "checkpoints" / "on_exception.ckpt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())


def test_guard_is_what_keeps_nan_out(tmp_path: Path) -> None:
    """The control: the same NaN gradient step with and without the guard's hook."""
    from types import SimpleNamespace

    from trident_core.callbacks import NonFiniteGuard

    def step(guarded: bool) -> torch.Tensor:
        layer = torch.nn.Linear(3, 1)
        optimizer = torch.optim.AdamW(layer.parameters(), lr=0.1)
        layer(torch.ones(1, 3)).sum().mul(float("nan")).backward()
        if guarded:
            trainer = SimpleNamespace(global_step=0, current_epoch=0, fit_loop=SimpleNamespace(batch_idx=0),
                                      precision_plugin=None)
            module = SimpleNamespace(log=lambda *a, **k: None)
            NonFiniteGuard().on_before_optimizer_step(trainer, module, optimizer)
        optimizer.step()
        return layer.weight.detach()

    assert torch.isnan(step(guarded=False)).all()
    assert torch.isfinite(step(guarded=True)).all()


@pytest.mark.parametrize(
    ("poison", "dtype", "skipped"),
    [
        ({1: (0, float("inf"))}, torch.float32, True),  # one Inf in one gradient
        ({0: (2, float("nan"))}, torch.float32, True),  # one NaN
        ({0: (0, float("inf")), 1: (0, float("-inf"))}, torch.float32, True),  # +Inf and -Inf cancel to NaN
        ({}, torch.float32, False),
        ({}, torch.float16, False),  # large finite fp16 gradients: a float16 sum would overflow, float32 does not
        ({0: (1, float("inf"))}, torch.float16, True),
    ],
)
def test_guard_check_catches_every_non_finite_value(poison: dict[int, tuple[int, float]], dtype: torch.dtype,
                                                   skipped: bool) -> None:
    """The guard checks one float32 sum per gradient; NaN and Inf anywhere must still be caught, and large but
    finite half-precision gradients must not be."""
    from types import SimpleNamespace

    from trident_core.callbacks import NonFiniteGuard

    params = [torch.nn.Parameter(torch.zeros(64, dtype=dtype)) for _ in range(2)]
    for i, p in enumerate(params):
        p.grad = torch.full((64,), 60000.0 if dtype == torch.float16 else 1.0, dtype=dtype)
        if i in poison:
            p.grad[poison[i][0]] = poison[i][1]
    optimizer = torch.optim.SGD(params, lr=0.1)
    trainer = SimpleNamespace(global_step=7, current_epoch=0, fit_loop=SimpleNamespace(batch_idx=7),
                              precision_plugin=None)
    guard = NonFiniteGuard()
    guard.on_before_optimizer_step(trainer, SimpleNamespace(log=lambda *a, **k: None), optimizer)
    assert guard.skipped == int(skipped)
    assert all((p.grad is None) == skipped for p in params)
