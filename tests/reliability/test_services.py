"""Flaky services and full disks: W&B that accepts and then dies, a disk without space, an unwritable folder.
(W&B on a closed loopback port: tests/core/test_tracking.py.)"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import wandb
from wandb_records import summarize, wait_for_exit

from toydomain import DOMAIN, main
from trident_core.cli import run_domain


class _DyingServer:
    """Accepts TCP connections (so the reachability probe passes), never answers, and dies after ``life_s``."""

    def __init__(self, life_s: float) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.conns: list[socket.socket] = []
        self.until = time.monotonic() + life_s
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while time.monotonic() < self.until:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            self.conns.append(conn)
        for conn in self.conns:  # the server dies: every connection is reset, the port closes
            conn.close()
        self.sock.close()

    def stop(self) -> None:
        self.until = 0
        self.thread.join()


def test_wandb_server_that_dies_mid_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = _DyingServer(life_s=6)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.port}")
    start = time.monotonic()
    try:
        cli = run_domain(DOMAIN, ["fit", "--config", "debug", "--trainer.logger.class_path",
                                  "trident_core.tracking.TridentWandbLogger", "--trainer.logger.init_args.init_timeout",
                                  "15", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
                                  "--trainer.default_root_dir", str(tmp_path / "run"),
                                  "--data.data_dir", str(tmp_path / "data")])
    finally:
        server.stop()
    elapsed = time.monotonic() - start
    assert server.accepted >= 1  # the server was up when the run began: the probe said "online"
    assert cli is not None and cli.trainer.state.finished and cli.trainer.global_step == 16
    assert cli.trainer.logger.mode == "offline"  # fell back and kept everything locally
    run_id = cli.trainer.logger.version
    if wandb.run is not None:
        wandb.run.finish()
    files = list((tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert files, "no local run file"
    assert "train/loss" in summarize(wait_for_exit(files[-1]))["history"]
    assert elapsed < 120, f"a dying W&B server held training up for {elapsed:.0f} s"
    print(f"fit with a W&B server dying mid-connection: {elapsed:.1f} s (init_timeout 15 s)")


def test_full_disk_is_detected_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRIDENT_MIN_FREE_BYTES", str(1 << 60))  # an exbibyte: no disk has that free
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "debug", "--trainer.default_root_dir", str(tmp_path / "run"),
              "--data.data_dir", str(tmp_path / "data")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "MiB free, at least" in err and "free some space" in err and str(tmp_path / "run") in err
    assert not (tmp_path / "data").exists() and not (tmp_path / "run" / "checkpoints").exists()


def test_unwritable_output_is_detected_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(0o500)
    blocked = tmp_path / "file"
    blocked.write_text("a file where a folder should be")  # unwritable even for root
    try:
        for root in (ro / "run", blocked / "run"):
            if root.parent == ro and _root_ignores_permissions(ro):
                continue
            with pytest.raises(SystemExit):
                main(["fit", "--config", "debug", "--trainer.default_root_dir", str(root),
                      "--data.data_dir", str(tmp_path / "data")])
            err = capsys.readouterr().err
            assert f"{root}: output folder is not writable" in err and "--trainer.default_root_dir" in err
    finally:
        ro.chmod(0o700)
    assert not (tmp_path / "data").exists()


def _root_ignores_permissions(folder: Path) -> bool:
    try:
        (folder / ".probe").write_text("x")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True
