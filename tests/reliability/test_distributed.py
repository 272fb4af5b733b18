"""2-process DDP on CPU (gloo): results match a single-process run, and a rank that dies ends the whole job
with an error instead of a hang. (Identical initial weights and disjoint shards: tests/core/test_ddp.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from toydomain import DOMAIN
from trident_core.cli import run_domain

HERE = Path(__file__).parent
BOUND_S = 120  # a dead rank must end the job within this (Lightning's observer + gloo's closed sockets)


def _ddp(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "toydomain", "fit", "--config", "debug", "--preset", "cpu_ddp2",
           "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "ddp"),
           "--export_on_fit_end.enabled", "false",
           "--data.data_dir", str(tmp_path / "data"), *extra]
    return subprocess.Popen(cmd, env=env, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _session_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.distributed
@pytest.mark.slow
def test_ddp_matches_single_process(tmp_path: Path) -> None:
    """Same data, same effective batch (2 x 8 = 16): the models differ only by the order of samples."""
    proc = _ddp(tmp_path, "--data.batch_size", "8", "--trainer.callbacks+=faults.SaveWeights",
                f"--trainer.callbacks.path={tmp_path / 'ddp.pt'}")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    single = run_domain(DOMAIN, ["fit", "--config", "debug", "--trainer.enable_progress_bar", "false",
                                 "--export_on_fit_end.enabled", "false",
                                 "--trainer.default_root_dir", str(tmp_path / "single"),
                                 "--data.data_dir", str(tmp_path / "data")])
    assert single is not None
    ddp_module = type(single.model)(net=type(single.model.net)())
    ddp_module.load_state_dict(torch.load(tmp_path / "ddp.pt", weights_only=True))
    data = torch.load(tmp_path / "data" / "val.pt", weights_only=True)
    with torch.no_grad():
        logits = {"ddp": ddp_module.net(data["x"]), "single": single.model.net.eval()(data["x"])}
    acc = {k: float((v.argmax(-1) == data["y"]).float().mean()) for k, v in logits.items()}
    loss = {k: float(torch.nn.functional.cross_entropy(v, data["y"])) for k, v in logits.items()}
    assert acc["ddp"] == pytest.approx(acc["single"], abs=0.05), acc
    assert loss["ddp"] == pytest.approx(loss["single"], abs=0.1), loss
    assert single.trainer.global_step == 32  # 2 epochs x 16 steps; DDP: 2 x 16 steps of 8 per rank


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("rank", [1, 0])
def test_a_dead_rank_ends_the_job_with_an_error(tmp_path: Path, rank: int) -> None:
    start = time.monotonic()
    proc = _ddp(tmp_path, "--trainer.max_epochs", "50", "--trainer.callbacks+=faults.ExitRankAtStep",
                f"--trainer.callbacks.rank={rank}", "--trainer.callbacks.step=20",
                f"--trainer.callbacks.stamp={tmp_path / 'died'}")
    try:
        proc.wait(timeout=BOUND_S + 60)
        while _session_alive(proc.pid) and time.monotonic() - start < BOUND_S + 60:
            time.sleep(0.2)  # the main process is gone; the other rank must not linger either
        elapsed = time.monotonic() - start
        ended = time.time()
        survivors = _session_alive(proc.pid)
    finally:
        if _session_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode != 0
    assert not survivors, f"a rank was still running {elapsed:.0f} s after rank {rank} died"
    after_death = ended - float((tmp_path / "died").read_text())
    assert after_death < BOUND_S, f"the job took {after_death:.0f} s to end after rank {rank} died"
    print(f"rank {rank} died at step 20; every process was gone {after_death:.1f} s later ({elapsed:.0f} s in all)")
