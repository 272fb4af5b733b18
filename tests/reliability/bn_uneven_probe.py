"""Run as a script by test_distributed.py: 2-process DDP (gloo) where rank 0's last training batch holds one sample
and rank 1's holds two. TaskModule skips a one-sample batch for BatchNorm; the ranks must agree on it, or rank 1
waits forever in the gradient all-reduce that rank 0 never joins. Prints each rank's step count."""

from __future__ import annotations

import sys

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from toydomain import ToyModule


class RankBatches:
    """Batch indices per rank: rank 0 ends on a batch of one, rank 1 on a batch of two."""

    def __init__(self, rank: int) -> None:
        self.batches = [[0, 1], [2, 3], [4]] if rank == 0 else [[5, 6], [7, 8], [9, 10]]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class Probe(ToyModule):
    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.randn(11, 8, generator=g), torch.randint(0, 3, (11,), generator=g))
        return DataLoader(data, batch_sampler=RankBatches(self.global_rank))


def main() -> None:
    L.seed_everything(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        use_distributed_sampler=False, limit_val_batches=0)
    module = Probe(net)
    trainer.fit(module)
    print(f"rank {trainer.global_rank} steps {trainer.global_step}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
