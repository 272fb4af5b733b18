"""What a run leaves behind: W&B files only in the run folder, artifacts logged without copies, checkpoint sizes
that add up, the disk use printed at the end, a warning before training when the disk is short, and no test
writing outside its own folder."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import wandb
from wandb_records import artifact_manifests

from toydomain import DOMAIN
from trident_core.cli import preflight, run_domain
from trident_core.disk import CheckpointPolicy, disk_bytes, tensor_bytes
from trident_core.errors import ConfigError

# Written at import by third-party libraries, once per machine and not per run: matplotlib's font list (imported by
# torchmetrics) and onnxruntime's telemetry database
IMPORT_CACHES = ("/.cache/matplotlib/", "/.cache/Microsoft/DeveloperTools/.onnxruntime/")
WANDB_LOGGER = ["--trainer.logger.class_path", "trident_core.tracking.TridentWandbLogger"]


def _fit_in_empty_home(tmp_path: Path, module: str, args: list[str], timeout: float) -> tuple[Path, Path, str]:
    """``fit`` in a new process, as a new user's first run: an empty home folder, no W&B settings, no login."""
    home, cwd = tmp_path / "empty-home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "XDG_")) and k != "MPLCONFIGDIR"}
    env.update(HOME=str(home), WANDB_CONSOLE="off", WANDB_SILENT="true")
    code = f"from {module} import main\nmain({args!r})"
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return home, cwd, proc.stdout + proc.stderr


def _assert_nothing_left_outside(run: Path, home: Path, cwd: Path, output: str) -> None:
    """Nothing but a few kB under HOME, every W&B file in the run folder, every artifact logged without a copy."""
    under_home = [p for p in home.rglob("*") if p.is_file()]
    big = [p for p in under_home if p.stat().st_size > 4096 and not any(c in str(p) for c in IMPORT_CACHES)]
    assert not big, f"written under HOME: {big}"
    assert not [p for p in home.rglob("*") if "wandb" in p.name], "W&B wrote under HOME"
    assert not list(cwd.iterdir()), "files in the working folder"
    (run_file,) = run.glob("wandb/offline-run-*/run-*.wandb")
    manifests = artifact_manifests(run_file)
    kept = {"artifact": sorted((run / "artifact").rglob("*")), "checkpoints": sorted((run / "checkpoints").iterdir())}
    logged: dict[str, list[dict]] = {}  # config-<id>, model-<id> (checkpoints), <domain>-artifact-<id>
    for name, versions in manifests.items():
        kind = "artifact" if "-artifact-" in name else name.split("-")[0]
        logged[kind] = [e for version in versions for e in version]
    # the exported artifact: every file of the folder, by its name in it
    assert {e["path"] for e in logged["artifact"]} == {p.relative_to(run / "artifact").as_posix()
                                                        for p in kept["artifact"] if p.is_file()}
    # the checkpoints: the best one and last.ckpt, each once (two versions of model-<run id>)
    assert len(logged["model"]) == 2 and {e["path"] for e in logged["model"]} == {"model.ckpt"}
    inodes = {Path(e["local_path"]).stat().st_ino for e in logged["model"]}
    assert inodes == {p.stat().st_ino for p in kept["checkpoints"]}
    assert len(logged["config"]) == 1
    for entry in (e for entries in logged.values() for e in entries):
        local = Path(entry["local_path"])
        # W&B uploads (now or at `wandb sync`) a hard link in the run folder: the same bytes, not a copy
        assert local.is_relative_to(run / "wandb" / "artifact-links"), local
        assert local.stat().st_nlink == 2 and entry["skip_cache"] and entry["size"] == local.stat().st_size
    seen: set[tuple[int, int]] = set()
    kept_bytes = disk_bytes([run / "checkpoints", run / "artifact", *run.glob("config*.yaml")], seen)
    wandb_own = disk_bytes([run / "wandb"], seen)  # W&B's run file and logs; the links add nothing
    assert wandb_own < 1024**2, f"{wandb_own} bytes of W&B files besides the logged ones"
    assert "run files:" in output and "checkpoints" in output, output[-2000:]
    print(f"run folder: kept files {kept_bytes} B, W&B's own {wandb_own} B; under HOME: "
          f"{sum(p.stat().st_size for p in under_home)} B in {len(under_home)} third-party import caches")


@pytest.mark.slow  # 2 min 36 s on the loaded 2-core machine, 28 s of CPU: above the default pass's 20 s
def test_demo_fit_in_an_empty_home_keeps_every_file_in_the_run_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["fit", "--config", "demo", *WANDB_LOGGER, "--trainer.default_root_dir", str(run),
            "--data.data_dir", str(tmp_path / "data"), "--trainer.enable_progress_bar", "false"]
    home, cwd, output = _fit_in_empty_home(tmp_path, "toydomain", args, timeout=300)
    _assert_nothing_left_outside(run, home, cwd, output)


@pytest.mark.slow
def test_nlp_demo_fit_in_an_empty_home_keeps_every_file_in_the_run_folder(tmp_path: Path) -> None:
    """The case of the report: the NLP demo (MiniLM, ~90 MB of weights) left as much again under
    ~/.local/share/wandb/artifacts/staging."""
    run = tmp_path / "run"
    args = ["fit", "--config", "demo", "--trainer.default_root_dir", str(run), "--data.data_dir",
            str(tmp_path / "data"), "--trainer.enable_progress_bar", "false", "--trainer.limit_train_batches", "20"]
    home, cwd, output = _fit_in_empty_home(tmp_path, "trident_nlp.cli", args, timeout=900)
    _assert_nothing_left_outside(run, home, cwd, output)


def test_checkpoint_size_is_weights_plus_optimizer_state(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    run = tmp_path / "run"
    cli = run_domain(DOMAIN, ["fit", "--trainer.default_root_dir", str(run), "--data.data_dir", str(tmp_path / "data"),
                              "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
                              "--trainer.max_epochs", "1", "--model.net.init_args.hidden", "4096",
                              "--checkpoint.save_weights_only", "true"])
    weights = tensor_bytes(cli.model.state_dict())
    assert weights > 150_000  # large enough that the checkpoint's other keys are small beside it
    last = run / "checkpoints" / "last.ckpt"
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    # last.ckpt: the weights and AdamW's two moments per weight, plus a few kB (hyperparameters, loops, RNG state)
    assert 3 * weights <= last.stat().st_size <= 3 * weights + 100_000
    # the best checkpoint with --checkpoint.save_weights_only: the weights alone, and still what `test` and `export` use
    assert weights <= best.stat().st_size <= weights + 100_000
    assert "optimizer_states" not in torch.load(best, weights_only=True)
    assert "optimizer_states" in torch.load(last, weights_only=True)
    with pytest.raises(ConfigError, match=r"holds the weights only .*--ckpt_path last"):
        run_domain(DOMAIN, ["fit", "--trainer.default_root_dir", str(run), "--data.data_dir", str(tmp_path / "data"),
                            "--trainer.logger", "false", "--ckpt_path", str(best)], exit_on_error=False)
    # the estimate made before training covers what the run wrote, without crying wolf
    written = disk_bytes([run])
    estimate = CheckpointPolicy(save_top_k=1, best_weights_only=True).estimate(weights)
    assert written <= estimate <= 2 * written, (written, estimate)
    err = caplog.text
    assert "run files: " in err and str(run / "checkpoints") in err and "optimizer state" in err, err[-2000:]


def test_preflight_warns_when_the_disk_is_short_of_the_estimate(tmp_path: Path) -> None:
    expected = r"likely to write about [0-9.]+ GiB \(weights 1\.0 GiB.*--checkpoint.save_weights_only true"
    with pytest.warns(UserWarning, match=expected):
        preflight(tmp_path, expected_bytes=1 << 60, weights=1 << 30)  # an exbibyte: no disk has that free
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        preflight(tmp_path, expected_bytes=1024, weights=256)  # room enough: silent


def test_tests_write_nothing_outside_tmp_path(tmp_path: Path) -> None:
    """tests/conftest.py gives every test (and the processes it starts) a home folder of its own beside its
    tmp_path, and no W&B folder settings, so W&B's default folders are there too."""
    home = tmp_path.with_name(f"{tmp_path.name}-home")
    assert Path.home() == home and os.environ["HOME"] == str(home) and home.is_dir()
    for folder in (wandb.env.get_data_dir(), wandb.env.get_cache_dir()):
        assert Path(folder).is_relative_to(home), folder
    assert not any(key in os.environ for key in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_DIR"))
