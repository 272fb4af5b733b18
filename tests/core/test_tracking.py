"""W&B tracking: real offline runs, resume into the same run, an unreachable server never blocks training."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest
import torch
import wandb
from wandb_records import artifact_manifests, summarize, wait_for_exit

from toydomain import DOMAIN
from trident_core.cli import run_domain
from trident_core.tracking import TridentWandbLogger, upload_safely


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
    run_file = _run_file(tmp_path, logger.version)
    seen = summarize(run_file)
    assert {"train/loss", "val/loss", "val/acc", "trainer/global_step"} <= seen["history"]
    assert {"cli", "net", "optimizer"} <= seen["config"]  # resolved CLI config and module hyperparameters
    assert f"config:config-{logger.version}" in seen["artifacts"]
    assert f"model:model-{logger.version}" in seen["artifacts"]  # best checkpoint
    assert f"model:toy-artifact-{logger.version}" in seen["artifacts"]  # exported artifact
    assert (tmp_path / "run" / "config.yaml").is_file()
    # logged without copies: each file is a hard link in the run folder, kept out of W&B's staging area and cache
    # (tests/core/test_run_disk.py checks the same in a new process with an empty HOME, in the slow pass)
    entries = [e for versions in artifact_manifests(run_file).values() for version in versions for e in version]
    assert len(entries) == 7  # config, best and last checkpoints, the 4 files of the exported artifact
    for entry in entries:
        local = Path(entry["local_path"])
        assert local.is_relative_to(tmp_path / "run" / "wandb" / "artifact-links") and local.stat().st_nlink == 2
        assert entry["skip_cache"]
    assert not (tmp_path / ".local" / "share" / "wandb").exists()


def test_resume_continues_steps_optimizer_and_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    first = _fit(tmp_path, "--trainer.max_epochs", "2")
    run_id = first.trainer.logger.version
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["trident"]["wandb_run_id"] == run_id
    assert saved["global_step"] == 32
    wandb.run.finish()  # as the end of the CLI process does (else the next logger reuses this run in-process)
    second = _fit(tmp_path, "--trainer.max_epochs", "3", "--ckpt_path", "last")
    wandb.run.finish()
    # the run ids W&B wrote, read from every run file it left (not found by the id): both fits logged to one run
    files = sorted((tmp_path / "run" / "wandb").rglob("*.wandb"))
    assert len(files) == 2, files  # one run file per fit
    wait_for_exit(files[-1])
    assert [summarize(f)["run_ids"] for f in files] == [{run_id}, {run_id}]
    assert second.trainer.logger.version == run_id
    assert second.trainer.global_step == 48  # continued, not restarted
    resumed = torch.load(last, weights_only=True)
    adam_state = resumed["optimizer_states"][0]["state"][0]
    assert int(adam_state["step"]) == 48  # optimizer moments carried over from step 32
    assert resumed["lr_schedulers"][0]["last_epoch"] == 48


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
    assert elapsed < 120, f"training with an unreachable W&B server took {elapsed:.0f}s"  # a hang guard only:
    # a closed port refuses at once; the README's bound (the 5 s probe) is checked on a silent server below


PROBE_S = 5.0  # README: "with credentials it first probes the server (5 s)" (connect_timeout)
PROBE_MARGIN_S = 10.0  # a loaded machine: 2 cores shared by several test runs


def test_a_silent_server_costs_the_five_second_probe_then_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that never answers (its accept queue is full, so connection attempts are dropped, as behind a
    firewall): the logger waits for the probe's 5 s, not for W&B's own retries, and logs offline."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    for _ in range(4):  # fill the accept queue (backlog 0): later SYNs are dropped and a connect hangs
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(address)
        fillers.append(filler)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{address[1]}")
    try:
        start = time.monotonic()
        logger = TridentWandbLogger()
        elapsed = time.monotonic() - start
    finally:
        for sock in (*fillers, listener):
            sock.close()
    assert logger.mode == "offline"
    assert PROBE_S - 0.5 <= elapsed < PROBE_S + PROBE_MARGIN_S, f"the probe took {elapsed:.1f} s"


def test_finish_timeout_and_init_timeout_reach_the_wandb_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound on the wait at exit is W&B's own setting; its effect on a server that dies mid-run is measured by
    the slow tests/reliability/test_services.py::test_wandb_server_dying_mid_run_costs_a_bounded_wait_and_no_data."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = TridentWandbLogger(save_dir=str(tmp_path), finish_timeout=7.0, init_timeout=11.0)
    run = logger.experiment
    try:
        assert (run.settings.finish_timeout, run.settings.init_timeout) == (7.0, 11.0)
        default = TridentWandbLogger(save_dir=str(tmp_path / "default"))
        assert default._wandb_init["settings"].finish_timeout == 300.0  # README: 300 s by default
    finally:
        run.finish()


def test_after_one_failed_upload_no_more_are_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """The artifact circuit breaker: W&B's synchronous login check waits on a dead server, so that wait is paid
    once; later uploads are not tried, and each warning names where the files stay."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = TridentWandbLogger(save_dir=str(tmp_path))
    tried: list[str] = []

    def failing() -> None:
        tried.append("config")
        raise ConnectionError("server gone")

    with caplog.at_level(logging.WARNING, logger="trident_core.tracking"):
        upload_safely(logger, failing, "the config", tmp_path / "config.yaml")
        upload_safely(logger, lambda: tried.append("checkpoint"), "the checkpoint", tmp_path / "checkpoints")
        upload_safely(logger, lambda: tried.append("artifact"), "the artifact", tmp_path / "artifact")
    assert tried == ["config"] and logger.artifacts_failed
    assert f"did not log the config as an artifact (server gone); it stays in {tmp_path / 'config.yaml'}" in caplog.text
    assert f"(W&B failed earlier in this run); it stays in {tmp_path / 'artifact'}" in caplog.text
