"""Kill and resume for every domain: each domain's `debug` config, SIGKILL in the second or third epoch, resumed
with `fit --ckpt_path last`; the final weights equal those of an uninterrupted run (deterministic mode).
Resumes start from the epoch-end `last.ckpt` (see test_kill_resume.py for why)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trident_core.export import load_checkpoint

HERE = Path(__file__).parent
EPOCHS = 3
STEPS = {"nlp": 4, "audio": 2, "vision": 2}  # optimizer steps per epoch of each debug config


def _args(domain: str, root: Path) -> list[str]:
    return ["fit", "--config", "debug", "--trainer.deterministic", "true", "--trainer.max_epochs", str(EPOCHS),
            "--trainer.enable_progress_bar", "false", "--trainer.logger", "false", "--trainer.default_root_dir",
            str(root), "--export_on_fit_end.enabled", "false"]


def _fit(domain: str, tmp_path: Path, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Every phase in its own process with the same settings: one process that trains in-process and one in a
    subprocess could differ in thread pools, and so in float rounding, for reasons unrelated to resuming."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    code = f"from trident_{domain}.cli import main; main()"
    cmd = [sys.executable, "-c", code, *_args(domain, tmp_path / name), "--trainer.callbacks+=faults.SaveWeights",
           f"--trainer.callbacks.path={tmp_path / name / 'final.pt'}", *extra]
    return subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)


@pytest.mark.slow
@pytest.mark.parametrize("domain", ["nlp", "audio", "vision"])
def test_domain_sigkill_then_resume_matches_uninterrupted(tmp_path: Path, domain: str) -> None:
    step = random.randrange(STEPS[domain], STEPS[domain] * EPOCHS)
    reference = _fit(domain, tmp_path, "reference")
    assert reference.returncode == 0, reference.stderr[-3000:]
    killed = _fit(domain, tmp_path, "run", "--trainer.callbacks+=faults.KillAtStep",
                  f"--trainer.callbacks.step={step}")
    assert killed.returncode == -signal.SIGKILL, f"{domain} step {step}: {killed.stderr[-3000:]}"
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert last["global_step"] == step // STEPS[domain] * STEPS[domain]
    resumed = _fit(domain, tmp_path, "run", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    want = torch.load(tmp_path / "reference" / "final.pt", weights_only=True)
    got = torch.load(tmp_path / "run" / "final.pt", weights_only=True)
    differ = {k: float((got[k].double() - want[k].double()).abs().max())
              for k in want if not torch.equal(got[k], want[k])}
    assert not differ, f"{domain} killed at step {step}: {differ}"
