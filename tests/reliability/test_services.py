"""Flaky services and full disks: W&B that accepts and then dies (during start-up, or mid-run after the run went
online), a disk without space, an unwritable folder. (W&B on a closed loopback port: tests/core/test_tracking.py.)"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import wandb
from fake_wandb import FakeWandb
from wandb_records import summarize, wait_for_exit, wait_for_history

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


@pytest.mark.slow  # > 20 s on 2 cores: the slow pass (issue 17: default pass < 15 min)
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


class _WandbThatDiesMidRun(FakeWandb):
    """The local W&B server (tests/core/fake_wandb.py): the run goes online (GraphQL ``UpsertBucket``, the file
    stream), then the server dies: after its first file-stream request it shuts down and its port closes for good."""

    died_at: float | None = None

    def after_reply(self, path: str) -> None:
        if path.endswith("/file_stream") and self.died_at is None:
            self.died_at = time.monotonic()
            threading.Thread(target=self.stop, daemon=True).start()


@pytest.mark.slow
def test_wandb_server_dying_mid_run_costs_a_bounded_wait_and_no_data(tmp_path: Path) -> None:
    """The run goes online, the server dies once metrics stream: training finishes, the process ends within
    ``finish_timeout`` of the end of training instead of retrying uploads forever, and every metric is in the
    local run file (for ``wandb sync``). Without ``finish_timeout`` wandb waits for the uploads without a bound
    (this test's subprocess timeout would fire)."""
    server = _WandbThatDiesMidRun()
    env = {**os.environ, "WANDB_MODE": "online", "WANDB_API_KEY": "x" * 40,
           "WANDB_BASE_URL": f"http://127.0.0.1:{server.port}", "WANDB_CONSOLE": "off"}
    run = tmp_path / "run"
    args = ["fit", "--config", "debug", "--trainer.logger.class_path", "trident_core.tracking.TridentWandbLogger",
            "--trainer.logger.init_args.finish_timeout", "10", "--trainer.max_epochs", "3",
            "--trainer.default_root_dir", str(run), "--data.data_dir", str(tmp_path / "data")]
    code = f"import time\nfrom toydomain import main\nmain({args!r})\nprint('FIT_DONE', time.monotonic())"
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
        ended = time.monotonic()
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "UpsertBucket" in server.requests and server.died_at is not None  # it really was online, then died
    fit_done = float(proc.stdout.split("FIT_DONE")[1].split()[0])
    assert fit_done > server.died_at  # the server died during the run, not after it
    wait = ended - fit_done
    assert wait < 10 + 20, f"the process took {wait:.0f} s after training to give up on the dead server"
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "artifact" / "model.onnx").is_file()
    files = list((run / "wandb").glob("run-*/run-*.wandb"))
    assert len(files) == 1, files
    # every metric of the run is on disk (the exit record may be missing: the wait for uploads timed out)
    wait_for_history(files[0], {"train/loss", "val/acc", "epoch"})
    print(f"W&B server dead mid-run: process start to end of fit {fit_done - started:.1f} s; the process ended "
          f"{wait:.1f} s after fit (finish_timeout 10 s); {len(server.requests)} requests served before it died")


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


def test_output_path_under_a_file_is_detected_before_training(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where a folder should be")  # unwritable even for root
    with pytest.raises(SystemExit):
        main(["fit", "--config", "debug", "--trainer.default_root_dir", str(blocked / "run"),
              "--data.data_dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert f"{blocked / 'run'}: output folder is not writable" in err and "--trainer.default_root_dir" in err
    assert not (tmp_path / "data").exists()


@pytest.mark.slow  # > 20 s on 2 cores: the slow pass (issue 17: default pass < 15 min)
def test_read_only_output_folder_is_detected_before_training(tmp_path: Path) -> None:
    """A folder without write permission. Root ignores permission bits, so as root (CI) the check runs in a child
    process as ``nobody`` (through ``setpriv``); it skips, visibly in ``-ra``, only where neither is possible."""
    nobody = 65534
    as_root = os.geteuid() == 0
    if as_root and shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is missing: cannot run as a user that permissions bind")
    # as root, a world-readable folder owned by nobody (pytest's tmp_path is root-only)
    base = Path(tempfile.mkdtemp(prefix="trident-ro-")) if as_root else tmp_path
    try:
        ro = base / "readonly"
        ro.mkdir()
        if as_root:
            for path in (base, ro):
                os.chown(path, nobody, nobody)
            base.chmod(0o755)
        ro.chmod(0o500)  # read and enter, no write, for its owner
        root, data = ro / "run", base / "data"
        args = ["fit", "--config", "debug", "--trainer.default_root_dir", str(root), "--data.data_dir", str(data),
                "--trainer.logger", "false"]
        command = [sys.executable, "-c", f"from toydomain import main\nmain({args!r})"]
        if as_root:
            as_nobody = ["setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups", "--"]
            probe = subprocess.run([*as_nobody, sys.executable, "-c", "import toydomain"], capture_output=True,
                                   text=True, timeout=120, env={**os.environ, "HOME": str(base)})
            if probe.returncode != 0:
                # e.g. a checkout under a root-only folder (mktemp -d): nobody cannot read the virtual environment
                # or the test modules, so Python starts without them
                pytest.skip(f"nobody cannot import the test domain with {sys.executable} (is a parent folder of "
                            f"the checkout not world-searchable?): {(probe.stderr.strip().splitlines() or [''])[-1]}")
            command = [*as_nobody, *command]
        done = subprocess.run(command, env={**os.environ, "HOME": str(base)}, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 2, done.stderr[-3000:]
        assert f"{root}: output folder is not writable" in done.stderr and "--trainer.default_root_dir" in done.stderr
        assert not data.exists() and not root.exists()
    finally:
        ro.chmod(0o700)
        if as_root:
            shutil.rmtree(base)
