"""Real 2-process DDP on CPU (gloo) through the CLI: identical weights, disjoint shards, synced metrics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


@pytest.mark.slow  # > 20 s on 2 cores: the slow pass (issue 17: default pass < 15 min)
@pytest.mark.distributed
def test_two_process_ddp_on_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "toydomain", "fit", "--config", "debug", "--preset", "cpu_ddp2",
           "--trainer.default_root_dir", str(tmp_path / "run"), "--data.data_dir", str(tmp_path / "data"),
           "--trainer.callbacks+=toydomain.SaveRankWeights",
           f"--trainer.callbacks.folder={tmp_path / 'ranks'}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "ranks" / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "ranks" / "rank1.pt", weights_only=True)
    for key in r0["state"]:
        torch.testing.assert_close(r0["state"][key], r1["state"][key], rtol=0, atol=0)
    # the DistributedSampler gave each rank its own half of the 256 training samples
    assert len(r0["seen"]) == len(r1["seen"]) == 128
    assert not set(r0["seen"]) & set(r1["seen"])
    assert r0["val_loss"] == pytest.approx(r1["val_loss"], abs=1e-6)  # sync_dist reduced across ranks
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "run" / "artifact" / "model.onnx").is_file()  # rank 0 exported
