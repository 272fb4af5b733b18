"""DDP equivalence for a real domain: the nlp debug config (scratch BERT, embedded data) trained by 2 processes
(gloo, CPU) and by one process with the same global batch ends with the same weights. The toy domain's version,
and the dead-rank tests: test_distributed.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trident_core.cli import run_domain
from trident_nlp.cli import DOMAIN

HERE = Path(__file__).parent
# No random masks (ranks would draw different ones) and float32 kernels chosen deterministically; 2 epochs of
# 4 global batches of 16, so the sampler's order of a second epoch is compared too.
COMMON = ["--config", "debug", "--trainer.enable_progress_bar", "false", "--export_on_fit_end.enabled", "false",
          "--trainer.deterministic", "true", "--trainer.max_epochs", "2", "--trainer.limit_val_batches", "0",
          "--model.net.init_args.dropout", "0", "--model.net.init_args.encoder_dropout", "0"]

# Mutations of the DDP run that the equivalence must catch.
DDP_MUTATIONS = {
    "none": [],
    "doubled learning rate": ["--model.lr=0.002"],
    "half the data": ["--trainer.limit_train_batches=2"],
}


def _single(tmp_path: Path) -> dict[str, torch.Tensor]:
    cli = run_domain(DOMAIN, ["fit", *COMMON, "--data.batch_size", "16",
                              "--trainer.default_root_dir", str(tmp_path / "single"),
                              "--data.data_dir", str(tmp_path / "data")])
    assert cli is not None and cli.trainer.global_step == 8  # 2 epochs x 4 steps of 16
    return cli.model.state_dict()


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference; equal infinities count as equal (the out-of-scope threshold stays -inf
    without validation), any other non-finite difference as NaN, which fails the bound."""
    a, b = a.float(), b.float()
    return float((a - b).abs().masked_fill(a == b, 0.0).max()) if a.numel() else 0.0


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("mutation", sorted(DDP_MUTATIONS))
def test_nlp_ddp_weights_equal_single_process(tmp_path: Path, mutation: str) -> None:
    """2 ranks x 8 texts and one process x 16 train on the same global batches: BucketSampler groups
    ``batch_size x world`` indices per global batch (from the same seed and epoch), Lightning's wrapper deals
    them round-robin, and DDP averages the ranks' mean gradients into the mean over 16; the attention mask keeps
    a rank's shorter padding out of the result. So the weights after 8 steps agree to float rounding; each
    mutation of the DDP run must break that."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "trident_nlp", "fit", *COMMON, "--preset", "cpu_ddp2", "--data.batch_size", "8",
           "--trainer.default_root_dir", str(tmp_path / "ddp"), "--data.data_dir", str(tmp_path / "data"),
           "--trainer.callbacks+=faults.SaveWeights", f"--trainer.callbacks.path={tmp_path / 'ddp.pt'}",
           *DDP_MUTATIONS[mutation]]
    proc = subprocess.run(cmd, env=env, cwd=HERE, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    single = _single(tmp_path)
    assert set(ddp) == set(single)
    diff = max(_diff(ddp[k], single[k]) for k in single)
    moved = max(float(v.float().nan_to_num().abs().max()) for v in single.values())
    assert moved > 0.1  # the weights are far from zero, so 1e-5 is a tight bound
    print(f"{mutation}: largest weight difference {diff:.2e}")
    if mutation == "none":
        assert diff <= 1e-5, diff
    else:
        assert diff > 1e-3, f"{mutation}: weights within {diff:.2e} of the single-process run"
