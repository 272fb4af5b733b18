"""W&B tracking: real offline runs, resume into the same run, an unreachable server never blocks training."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import torch
import wandb
from wandb_records import summarize, wait_for_exit

from toydomain import DOMAIN
from trident_core.cli import run_domain


def _fit(tmp_path: Path, *extra: str):
    return run_domain(DOMAIN, ["fit", "--trainer.default_root_dir", str(tmp_path / "run"),
                               "--data.data_dir", str(tmp_path / "data"), "--trainer.enable_progress_bar", "false",
                               *extra])


def _run_file(tmp_path: Path, run_id: str) -> Path:
    if wandb.run is not None:
        wandb.run.finish()  # flush the run file, as the end of a CLI process does
    found = list((tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert found, f"no offline run file for {run_id}"
    return wait_for_exit(found[-1])


def test_offline_run_holds_metrics_config_and_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no credentials -> offline by itself
    cli = _fit(tmp_path, "--trainer.max_epochs", "2")
    logger = cli.trainer.logger
    assert logger.mode == "offline"
    seen = summarize(_run_file(tmp_path, logger.version))
    assert {"train/loss", "val/loss", "val/acc", "trainer/global_step"} <= seen["history"]
    assert {"cli", "net", "optimizer"} <= seen["config"]  # resolved CLI config and module hyperparameters
    assert f"config:config-{logger.version}" in seen["artifacts"]
    assert f"model:model-{logger.version}" in seen["artifacts"]  # best checkpoint
    assert f"model:toy-artifact-{logger.version}" in seen["artifacts"]  # exported artifact
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_resume_continues_steps_optimizer_and_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    first = _fit(tmp_path, "--trainer.max_epochs", "2")
    run_id = first.trainer.logger.version
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["trident"]["wandb_run_id"] == run_id
    assert saved["global_step"] == 32
    second = _fit(tmp_path, "--trainer.max_epochs", "3", "--ckpt_path", "last")
    assert second.trainer.logger.version == run_id
    assert second.trainer.global_step == 48  # continued, not restarted
    resumed = torch.load(last, weights_only=True)
    adam_state = resumed["optimizer_states"][0]["state"][0]
    assert int(adam_state["step"]) == 48  # optimizer moments carried over from step 32
    assert resumed["lr_schedulers"][0]["last_epoch"] == 48
    assert run_id in summarize(_run_file(tmp_path, run_id))["run_ids"]


def test_unreachable_server_does_not_stop_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    cli = _fit(tmp_path, "--trainer.max_epochs", "1")
    elapsed = time.monotonic() - start
    assert cli.trainer.state.finished and cli.trainer.global_step == 16
    assert cli.trainer.logger.mode == "offline"
    assert "val/acc" in summarize(_run_file(tmp_path, cli.trainer.logger.version))["history"]
    assert elapsed < 120, f"training with an unreachable W&B server took {elapsed:.0f}s"
