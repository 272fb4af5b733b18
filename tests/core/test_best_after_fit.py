"""`--ckpt_path best` after `fit` names the best checkpoint of the whole run, the last epoch's included."""

from __future__ import annotations

from pathlib import Path

from toydomain import DOMAIN
from trident_core.cli import run_domain
from trident_core.commands import resolve_checkpoint


def test_best_is_recorded_in_last_after_a_one_epoch_fit(tmp_path: Path) -> None:
    # control: with the best-model callback saving on train epoch end (after last.ckpt, at validation end),
    # last.ckpt records no best after one epoch and resolve_checkpoint raises CheckpointError
    root = tmp_path / "run"
    run_domain(DOMAIN, ["fit", "--config", "debug", "--trainer.default_root_dir", str(root), "--data.data_dir",
                        str(tmp_path / "data"), "--trainer.max_epochs", "1", "--export_on_fit_end.enabled", "false"])
    best = list((root / "checkpoints").glob("best-*.ckpt"))
    assert len(best) == 1
    assert resolve_checkpoint("best", root / "checkpoints") == best[0]
