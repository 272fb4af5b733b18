"""Reproducibility: with `deterministic: true` the same seed gives identical weights."""

from __future__ import annotations

from pathlib import Path

import torch

from toydomain import DOMAIN
from trident_core.cli import run_domain


def _weights(tmp_path: Path, name: str, seed: int) -> dict[str, torch.Tensor]:
    cli = run_domain(DOMAIN, ["fit", "--config", "debug", "--trainer.deterministic", "true",
                              "--seed_everything", str(seed), "--trainer.default_root_dir", str(tmp_path / name),
                              "--data.data_dir", str(tmp_path / "data")])
    return {k: v.clone() for k, v in cli.model.state_dict().items()}


def test_same_seed_same_weights_other_seed_other_weights(tmp_path: Path) -> None:
    a, b, c = _weights(tmp_path, "a", 5), _weights(tmp_path, "b", 5), _weights(tmp_path, "c", 6)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert any(not torch.equal(a[key], c[key]) for key in a)
