"""Trident as a library: your own nn.Module and DataModule, trained by a TaskModule, exported by the contract."""

import sys

import lightning as L
import torch
import torchmetrics
from torch import nn
from torch.utils.data import TensorDataset

from trident_core import ExportSpec, TaskModule, TridentDataModule, export_artifact, load_artifact


class SineRegressor(nn.Module):  # a plain model: no Lightning import needed
    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SineData(TridentDataModule):
    def setup(self, stage: str) -> None:
        x = torch.linspace(-3, 3, 512).unsqueeze(1)
        self.train_set = TensorDataset(x, torch.sin(x))

    def train_dataloader(self):
        return self.loader(self.train_set, shuffle=True)

    def val_dataloader(self):
        return self.loader(self.train_set)


class SineModule(TaskModule):
    def __init__(self, net: nn.Module, lr: float = 0.01) -> None:
        super().__init__(net, optimizer=lambda params: torch.optim.AdamW(params, lr=lr))
        self.set_metrics(torchmetrics.MetricCollection({"mae": torchmetrics.MeanAbsoluteError()}))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train/loss", loss, batch_size=len(x))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.val_metrics.update(self.net(x), y)
        self.log_dict(self.val_metrics, batch_size=len(x))

    def export_spec(self) -> ExportSpec:
        return ExportSpec(model=self.net.eval(), example_inputs=[(torch.randn(2, 1),), (torch.randn(9, 1),)],
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                          metadata={"task": "sine"})


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "runs/library_example"
    L.seed_everything(0, workers=True)
    module = SineModule(SineRegressor())
    trainer = L.Trainer(max_epochs=30, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        default_root_dir=out)
    trainer.fit(module, datamodule=SineData(batch_size=32))
    mae = float(trainer.callback_metrics["val/mae"])
    artifact = export_artifact(module.export_spec(), f"{out}/artifact", metrics={"val/mae": mae})
    y = load_artifact(artifact.path).run({"x": [[0.5], [1.0]]})["y"]
    print(f"val/mae={mae:.4f} onnx_diff={artifact.parity['onnx']['max_abs_diff']:.1e} sin(0.5)~{y[0, 0]:.3f}")
