"""Online and offline runs upload the same artifact files: a fit online against a W&B server on a local port
(tests/core/fake_wandb.py), and ``wandb sync`` of an offline fit to that server, each upload exactly the files (names,
sizes, MD5 digests) that the run's own artifact manifests list, and the two runs log the same files."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_wandb import FakeWandb
from wandb_records import artifact_manifests, wait_for_exit

WANDB_LOGGER = ["--trainer.logger.class_path", "trident_core.tracking.TridentWandbLogger"]


def _env(home: Path, server: FakeWandb | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "XDG_")) and k != "MPLCONFIGDIR"}
    env.update(HOME=str(home), WANDB_CONSOLE="off", WANDB_SILENT="true")
    if server is not None:
        env.update(WANDB_MODE="online", WANDB_API_KEY="x" * 40, WANDB_BASE_URL=server.url)
    return env


def _fit(tmp_path: Path, name: str, server: FakeWandb | None) -> tuple[Path, Path]:
    """A toy-domain ``fit`` in a new process with an empty HOME; returns the run folder and its W&B run file."""
    run, home = tmp_path / name, tmp_path / f"home-{name}"
    home.mkdir()
    args = ["fit", "--config", "debug", *WANDB_LOGGER, "--trainer.default_root_dir", str(run),
            "--data.data_dir", str(tmp_path / "data"), "--trainer.enable_progress_bar", "false"]
    proc = subprocess.run([sys.executable, "-c", f"from toydomain import main\nmain({args!r})"], cwd=tmp_path,
                          env=_env(home, server), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    _assert_nothing_under(home)
    (run_file,) = run.glob("wandb/*run-*/run-*.wandb")
    return run, wait_for_exit(run_file)


def _assert_nothing_under(home: Path) -> None:
    assert not [p for p in home.rglob("*") if "wandb" in p.name], "W&B wrote under HOME"


def _manifest_rows(run_file: Path) -> list[tuple[str, str, int, str]]:
    """The files the run's artifact manifests list, in the rows of ``FakeWandb.uploaded_files``."""
    return sorted((name, e["path"], e["size"], e["digest"])  # type: ignore[misc]
                  for name, versions in artifact_manifests(run_file).items() for v in versions for e in v)


def _local_rows(server: FakeWandb, run: Path) -> list[tuple[str, str, int, str]]:
    """The files that the manifests an online run sent name, read from the run folder (an online run file holds no
    artifact records): the hard links Trident logged, each hashed here."""
    rows = []
    for artifact in server.artifacts.values():
        for path, entry in artifact["manifest"]["contents"].items():
            local = Path(entry["local_path"])
            assert local.is_relative_to(run / "wandb" / "artifact-links"), local
            body = local.read_bytes()
            rows.append((artifact["name"], path, len(body), base64.b64encode(hashlib.md5(body).digest()).decode()))
    return sorted(rows)


def _kinds(rows: list[tuple[str, str, int, str]], run_id: str) -> list[tuple[str, str]]:
    """(artifact name without the run id, path in the artifact): what two different runs have in common."""
    return sorted((name.replace(run_id, "<run>"), path) for name, path, _, _ in rows)


@pytest.mark.slow  # 51 s on the loaded 2-core machine (wandb-core start, Lightning import), 20 s of CPU
def test_kept_files_logged_online_arrive_whole(tmp_path: Path) -> None:
    """``log_kept_files`` in an online run: every file arrives at the server with the bytes on disk, under its name
    in the artifact (a folder included), and nothing lands under HOME."""
    files = {"model.ckpt": tmp_path / "best.ckpt", "export/model.onnx": tmp_path / "model.onnx"}
    for i, path in enumerate(files.values()):
        path.write_bytes(os.urandom(3000 + i))
    home, run = tmp_path / "home-online", tmp_path / "run"
    home.mkdir()
    code = (f"from lightning.pytorch.loggers import WandbLogger\nfrom pathlib import Path\n"
            f"from trident_core.tracking import keep_wandb_under, log_kept_files\nkeep_wandb_under({str(run)!r})\n"
            f"logger = WandbLogger(project='trident', save_dir={str(run)!r})\n"
            f"log_kept_files(logger, 'thing', 'model', {{k: Path(v) for k, v in {files!r}.items()}}, 'here')\n"
            f"assert not getattr(logger, 'artifacts_failed', False)\nlogger.experiment.finish()")
    server = FakeWandb()
    try:
        proc = subprocess.run([sys.executable, "-c", code.replace("PosixPath", "")], env=_env(home, server),
                              capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stderr[-4000:]
    _assert_nothing_under(home)
    expected = sorted(("thing", name, path.stat().st_size,
                       base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode())
                      for name, path in files.items())
    assert server.uploaded_files() == expected
    assert _local_rows(server, run) == expected  # uploaded from the hard links in the run folder


@pytest.mark.slow  # two fits and a sync in new processes: ~1 min on the loaded 2-core machine
def test_online_run_and_synced_offline_run_upload_the_files_their_manifests_list(tmp_path: Path) -> None:
    server = FakeWandb()
    try:
        online, online_file = _fit(tmp_path, "online", server)
        assert online_file.parent.name.startswith("run-")  # the run went online
        uploaded_online = server.uploaded_files()
        online_rows = _local_rows(server, online)
        offline, offline_file = _fit(tmp_path, "offline", None)
        assert offline_file.parent.name.startswith("offline-run-")
        before_sync = len(server.artifacts)
        home = tmp_path / "home-sync"
        home.mkdir()
        # `wandb sync` writes its service log to ~/.cache/wandb unless WANDB_CACHE_DIR says otherwise
        env = {**_env(home, server), "WANDB_CACHE_DIR": str(offline / "wandb" / "cache")}
        sync = subprocess.run([sys.executable, "-m", "wandb", "sync", str(offline_file.parent)], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)
        assert sync.returncode == 0, sync.stdout[-2000:] + sync.stderr[-2000:]
        _assert_nothing_under(home)
        synced = FakeWandb.rows(list(server.artifacts.values())[before_sync:])
    finally:
        server.stop()
    offline_rows = _manifest_rows(offline_file)
    # online: what arrived is exactly the files the run logged, bytes included
    assert uploaded_online == online_rows
    # `wandb sync` of the offline run: exactly what the run file's manifests list
    assert synced == offline_rows
    # and the two runs log the same files: checkpoints (two versions), the exported artifact, the config
    online_id, offline_id = online_file.stem[4:], offline_file.stem[4:]
    assert _kinds(online_rows, online_id) == _kinds(offline_rows, offline_id)
    names = {name.replace(online_id, "<run>") for name, *_ in online_rows}
    assert {"model-<run>", "config-<run>"} <= names and any("-artifact-" in n for n in names), names
    exported = {p.relative_to(online / "artifact").as_posix() for p in (online / "artifact").rglob("*") if p.is_file()}
    assert {path for name, path, *_ in online_rows if "-artifact-" in name} == exported
    assert len(offline_rows) >= 4, offline_rows
    print(f"online run: {len(uploaded_online)} artifact files uploaded; offline run synced: {len(synced)}; "
          f"server operations: {sorted(set(server.requests) - {r for r in server.requests if '/' in r})}")
