"""Kill and resume: SIGKILL at a random step, `fit --ckpt_path last`, same weights as an uninterrupted run.

Checkpoints for resuming are taken at epoch ends (``last.ckpt``, the CLI default): Lightning does not
fast-forward a plain dataloader to the middle of an epoch, so a mid-epoch resume could not replay the same
batches. A kill therefore costs at most one epoch, and the resumed run is bit-identical because every
shuffling sampler is seeded per epoch (``set_epoch``), not by a generator that lives in the killed process.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from toydomain import DOMAIN
from trident_core.cli import remove_partial_saves, run_domain
from trident_core.errors import CheckpointError
from trident_core.export import load_checkpoint
from trident_core.module import CHECKPOINT_VERSION

HERE = Path(__file__).parent
STEPS_PER_EPOCH = 16  # toy domain: 256 samples, batch 16
EPOCHS = 3


def _args(tmp_path: Path, name: str) -> list[str]:
    return ["fit", "--config", "debug", "--trainer.deterministic", "true", "--trainer.max_epochs", str(EPOCHS),
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / name),
            "--export_on_fit_end.enabled", "false",
            "--data.data_dir", str(tmp_path / "data")]


def _weights(tmp_path: Path, name: str, *extra: str) -> dict[str, torch.Tensor]:
    """An in-process run (cheaper than a subprocess); returns the final weights."""
    cli = run_domain(DOMAIN, [*_args(tmp_path, name), *extra])
    assert cli is not None
    return {k: v.detach().clone() for k, v in cli.model.state_dict().items()}


def _toy(tmp_path: Path, name: str, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "toydomain", *_args(tmp_path, name), *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=HERE)


@pytest.mark.slow
@pytest.mark.parametrize("limit", [None, 8])
def test_sigkill_at_random_step_then_resume_matches_uninterrupted(tmp_path: Path, limit: int | None) -> None:
    extra = [] if limit is None else ["--trainer.limit_train_batches", str(limit)]
    steps = STEPS_PER_EPOCH if limit is None else limit
    step = random.randrange(steps, steps * EPOCHS)  # after the first epoch-end checkpoint
    want = _weights(tmp_path, "reference", *extra)

    killed = _toy(tmp_path, "run", *extra, "--trainer.callbacks+=faults.KillAtStep", f"--trainer.callbacks.step={step}")
    assert killed.returncode == -signal.SIGKILL, f"step {step}: {killed.stderr[-2000:]}"
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert last["global_step"] == step // steps * steps  # lost less than one epoch

    got = _weights(tmp_path, "run", *extra, "--ckpt_path", "last")
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0, msg=f"killed at step {step}: {key}")


_WRITER = """
import sys, torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from trident_core.checkpoint_io import AtomicCheckpointIO
from trident_core.module import CHECKPOINT_VERSION
io = AtomicCheckpointIO() if sys.argv[1] == "trident" else TorchCheckpointIO()
checkpoint = {"state_dict": {"w": torch.randn(3_000_000)}, "global_step": 1, "trident": {"version": CHECKPOINT_VERSION}}
while True:
    io.save_checkpoint(checkpoint, sys.argv[2])
"""


@pytest.mark.slow  # > 20 s on 2 cores: the slow pass (issue 17: default pass < 15 min)
@pytest.mark.parametrize("io", ["lightning", "trident"])
def test_kill_during_save_leaves_a_loadable_checkpoint(tmp_path: Path, io: str) -> None:
    """A process saves a 12 MB checkpoint over and over with ``TMPDIR`` on another filesystem (tmpfs, as on many
    clusters). The moment the file on disk is seen incomplete, or after 3 s, it gets SIGKILL; the checkpoint
    left behind must load.

    ``lightning`` is the control: Lightning's fsspec transaction writes its temporary file in ``$TMPDIR`` and
    moves it, which across filesystems is a copy, so a kill mid-copy leaves a truncated checkpoint. The CLI uses
    ``AtomicCheckpointIO`` (temporary file beside the target, ``fsync``, ``os.replace``) instead.
    """
    shm = Path("/dev/shm")
    if io == "lightning" and (not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev):
        pytest.skip("the control needs a TMPDIR on another filesystem (/dev/shm)")
    tmpdir = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() else tmp_path, prefix="trident-reliability-"))
    target = tmp_path / "checkpoints" / "last.ckpt"
    target.parent.mkdir()
    full = len(_serialised({"state_dict": {"w": torch.zeros(3_000_000)}, "global_step": 1,
                            "trident": {"version": CHECKPOINT_VERSION}}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmpdir)}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, io, str(target)], env=env, stderr=subprocess.PIPE)
    partial_seen = False
    try:
        deadline = time.monotonic() + 60
        while not target.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.001)
        until = time.monotonic() + 3.0
        while time.monotonic() < until and not partial_seen:
            try:
                partial_seen = target.stat().st_size != full
            except FileNotFoundError:
                partial_seen = True
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(tmpdir, ignore_errors=True)
    if io == "lightning":
        assert partial_seen, "the control never caught Lightning's copy in progress"
        with pytest.raises(CheckpointError):
            load_checkpoint(target)
    else:
        assert not partial_seen
        assert load_checkpoint(target)["global_step"] == 1
        remove_partial_saves(target.parent)  # what the next `fit` does first
        assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]


def _serialised(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_cli_saves_checkpoints_atomically_every_n_steps(tmp_path: Path) -> None:
    from trident_core.checkpoint_io import AtomicCheckpointIO

    # a failure at step 3 of a 4-step epoch: only the every-2-steps save can have written last.ckpt (at step 2);
    # without --last_checkpoint.every_n_train_steps there is no last.ckpt before the epoch ends (control: fails)
    with pytest.raises(RuntimeError, match="injected failure at step 3"):
        run_domain(DOMAIN, [*_args(tmp_path, "run"), "--trainer.max_epochs", "1", "--trainer.limit_train_batches",
                            "4", "--last_checkpoint.every_n_train_steps", "2",
                            "--trainer.callbacks+=faults.RaiseAtStep", "--trainer.callbacks.step=3"])
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"] == 2
    cli = run_domain(DOMAIN, [*_args(tmp_path, "run2"), "--trainer.max_epochs", "1"])
    assert cli is not None and isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_exception_inside_training_leaves_on_exception_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="injected failure at step 5"):
        run_domain(DOMAIN, [*_args(tmp_path, "run"), "--trainer.callbacks+=faults.RaiseAtStep",
                            "--trainer.callbacks.step=5"])
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "on_exception.ckpt")
    assert ckpt["global_step"] == 5


def test_failure_before_the_first_step_leaves_no_checkpoint_and_the_rerun_starts(tmp_path: Path) -> None:
    """Nothing trained, nothing to keep: an untrained ``on_exception.ckpt`` would make the fixed rerun in the same
    folder refuse to start ("holds an earlier run"). Control: Lightning's plain OnExceptionCheckpoint saves it."""
    with pytest.raises(RuntimeError, match="injected failure at step 0"):
        run_domain(DOMAIN, [*_args(tmp_path, "run"), "--trainer.callbacks+=faults.RaiseAtStep",
                            "--trainer.callbacks.step=0"])
    assert not list((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    run_domain(DOMAIN, _args(tmp_path, "run"))  # the same folder, now without the failure
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
