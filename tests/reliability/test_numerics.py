"""Numerics: fp16 with gradient scaling recovers from overflow; a BatchNorm batch of one sample is skipped.
(NaN/Inf skip-or-stop with the step named: tests/core/test_guard.py.)"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from toydomain import DOMAIN
from trident_core.cli import run_domain


def _args(tmp_path: Path) -> list[str]:
    return ["fit", "--config", "debug", "--trainer.enable_progress_bar", "false", "--export_on_fit_end.enabled",
            "false", "--trainer.default_root_dir", str(tmp_path / "run"), "--data.data_dir", str(tmp_path / "data")]


def test_fp16_gradient_scaler_recovers_from_overflow(tmp_path: Path) -> None:
    """Lightning's 16-mixed precision with its torch.amp.GradScaler, on CPU (named as a plugin: the ``fp16``
    preset alone falls back to bf16 on CPU). Step 3's gradients are not finite: the scaler skips that step and
    halves its scale, the guard leaves it to the scaler, and training goes on."""
    cli = run_domain(DOMAIN, [*_args(tmp_path), "--trainer.plugins+=lightning.pytorch.plugins.MixedPrecision",
                              "--trainer.plugins.precision=16-mixed", "--trainer.plugins.device=cpu",
                              "--model.nan_at_step", "3"])
    assert cli is not None
    scaler = cli.trainer.precision_plugin.scaler
    assert isinstance(scaler, torch.amp.GradScaler)
    # GradScaler starts at 2^16 and doubles only after 2000 good steps: every overflow left a halving (step 3's
    # and any real fp16 overflow on the way)
    assert scaler.get_scale() <= 65536.0 / 2
    guard = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "NonFiniteGuard")
    assert guard.skipped == 0  # the scaler's job, not the guard's
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())
    assert cli.trainer.global_step == 32
    assert float(cli.trainer.callback_metrics["val/acc"]) > 0.9


def test_batchnorm_batch_of_one_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """256 samples in batches of 17 leave a last batch of 1, on which BatchNorm cannot train."""
    with caplog.at_level(logging.WARNING, logger="trident_core.module"):
        cli = run_domain(DOMAIN, [*_args(tmp_path), "--model.net", "faults.BatchNormMLP", "--data.batch_size", "17"])
    assert cli is not None
    assert cli.trainer.global_step == 2 * 15  # the 16th batch of each epoch (1 sample) was skipped
    assert "skipping a training batch of 1 sample" in caplog.text
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())


def test_batchnorm_batch_of_one_fails_without_the_skip() -> None:
    """The control: what PyTorch does with that batch."""
    net = torch.nn.BatchNorm1d(4).train()
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        net(torch.randn(1, 4))
