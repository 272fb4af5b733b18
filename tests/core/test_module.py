"""TaskModule's default optimizer: AdamW on the fused kernel where the parameters allow it."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn

from trident_core.module import TaskModule


class Regression(TaskModule):
    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.net(batch).pow(2).mean()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_default_optimizer_is_fused_adamw_and_trains_like_the_loop_version(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    module = Regression(nn.Linear(8, 1).to(dtype))
    reference = Regression(nn.Linear(8, 1).to(dtype))
    reference.load_state_dict(module.state_dict())
    data = torch.utils.data.DataLoader(torch.randn(64, 8, dtype=dtype), batch_size=16)
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, data)
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True
    # the same four steps with the for-loop AdamW and the same schedule end at the same weights
    loop = torch.optim.AdamW(reference.parameters(), lr=1e-3, weight_decay=0.01, foreach=False)
    schedule = module.lr_schedulers().lr_lambdas[0]  # type: ignore[union-attr]
    for step, batch in enumerate(data):
        for group in loop.param_groups:
            group["lr"] = 1e-3 * schedule(step)
        reference.training_step(batch, step).backward()
        loop.step()
        loop.zero_grad()
    for a, b in zip(module.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _fit_bf16(module: TaskModule, data: torch.utils.data.DataLoader, clip: float | None) -> Trainer:
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", precision="bf16-mixed", gradient_clip_val=clip)
    trainer.fit(module, data)
    return trainer


def test_bf16_mixed_clips_gradients_with_the_fused_optimizer() -> None:
    """Lightning's MixedPrecision refuses to clip for a fused optimizer even under bf16, which has no loss scaler
    (Lightning issue #21435); TaskModule clips, exactly as a hand-written bf16 loop does."""
    torch.manual_seed(0)
    module = Regression(nn.Linear(8, 1))
    reference = Regression(nn.Linear(8, 1))
    unclipped = Regression(nn.Linear(8, 1))
    reference.load_state_dict(module.state_dict())
    unclipped.load_state_dict(module.state_dict())
    start = module.net.weight.detach().clone()
    data = torch.utils.data.DataLoader(torch.randn(64, 8), batch_size=16)
    # clipped to a norm far below AdamW's eps, the updates all but vanish: the clipping is plain to see
    clip = 1e-10
    trainer = _fit_bf16(module, data, clip=clip)
    assert trainer.optimizers[0].defaults["fused"] is True
    _fit_bf16(unclipped, data, clip=None)
    loop = torch.optim.AdamW(reference.parameters(), lr=1e-3, weight_decay=0.01, fused=True)
    schedule = module.lr_schedulers().lr_lambdas[0]  # type: ignore[union-attr]
    for step, batch in enumerate(data):
        for group in loop.param_groups:
            group["lr"] = 1e-3 * schedule(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
            loss = reference.training_step(batch, step)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), clip)
        loop.step()
        loop.zero_grad()
    for a, b in zip(module.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # the control: without clipping the same run moves the weights 50x further
    moved = (module.net.weight - start).abs().max()
    assert (unclipped.net.weight - start).abs().max() > 50 * moved
