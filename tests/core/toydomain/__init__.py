"""A tiny domain used by the core tests: Gaussian blobs classified by an MLP, through the real CLI."""

from __future__ import annotations

from pathlib import Path

import torch
import torchmetrics
from torch import nn
from torch.utils.data import TensorDataset

from trident_core.data import TridentDataModule, build_once
from trident_core.domain import DomainSpec
from trident_core.export import ExportSpec
from trident_core.module import LRSchedulerCallable, OptimizerCallable, TaskModule

DOMAIN = DomainSpec(
    name="toy",
    module_class="toydomain:ToyModule",
    datamodule_class="toydomain:ToyDataModule",
    config_package="toydomain.configs",
    monitor="val/acc",
    monitor_mode="max",
    infer="toydomain:infer",
    demo_inputs="toydomain:demo_inputs",
    demo_metrics=("test/acc",),
    links=(("data.num_classes", "model.num_classes"),),
    description="toy blobs",
    infer_options="toydomain:infer_options",
)


class MLP(nn.Module):
    def __init__(self, in_features: int = 8, hidden: int = 32, num_classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ToyModule(TaskModule):
    def __init__(self, net: nn.Module, num_classes: int = 3, optimizer: OptimizerCallable | None = None,
                 scheduler: LRSchedulerCallable | None = None,
                 warmup_ratio: float = 0.0, nan_at_step: int = -1, lr: float | None = None,
                 compile: bool | dict = False) -> None:
        super().__init__(net, optimizer=optimizer, scheduler=scheduler, warmup_ratio=warmup_ratio, lr=lr,
                         compile=compile)
        self.num_classes = num_classes
        self.nan_at_step = nan_at_step
        self.loss = nn.CrossEntropyLoss()
        self.set_metrics(torchmetrics.MetricCollection(
            {"acc": torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)}))
        self.example_input_array = torch.zeros(2, 8)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        loss = self.loss(logits, y)
        if self.global_step == self.nan_at_step:
            loss = loss * float("nan")
        self.log("train/loss", loss, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val/loss", self.loss(logits, y), batch_size=len(y), sync_dist=True)
        self.val_metrics.update(logits, y)
        self.log_dict(self.val_metrics, batch_size=len(y))

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.test_metrics.update(self.net(x), y)
        self.log_dict(self.test_metrics, batch_size=len(y))

    def predict_step(self, batch, batch_idx):
        return self.net(batch[0]).argmax(-1)

    def export_spec(self) -> ExportSpec:
        return ExportSpec(
            model=self.net.eval(),
            example_inputs=[(torch.randn(2, 8),), (torch.randn(5, 8),)],
            input_names=["x"], output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
            metadata={"num_classes": self.num_classes},
        )


def _blobs(n: int, seed: int, num_classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    centers = torch.randn(num_classes, 8, generator=g) * 3
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, (n,), generator=g)
    return centers[y] + torch.randn(n, 8, generator=g), y


class ToyDataModule(TridentDataModule):
    def __init__(self, data_dir: str = "data/toy", num_classes: int = 3, batch_size: int = 16,
                 num_workers: int = 0, seed: int = 0) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.data_dir = data_dir
        self.num_classes = num_classes

    def uses_default_data(self) -> bool:
        return True

    def build_default_data(self) -> None:
        def write(folder: Path) -> None:
            for split, n, seed in (("train", 256, 1), ("val", 64, 2), ("test", 64, 3)):
                x, y = _blobs(n, seed, self.num_classes)
                torch.save({"x": x, "y": y}, folder / f"{split}.pt")
        build_once(self.data_dir, write)

    def _split(self, name: str) -> TensorDataset:
        data = torch.load(Path(self.data_dir) / f"{name}.pt", weights_only=True)
        return TensorDataset(data["x"], data["y"])

    def train_dataloader(self):
        return self.loader(self._split("train"), shuffle=True)

    def val_dataloader(self):
        return self.loader(self._split("val"))

    def test_dataloader(self):
        return self.loader(self._split("test"))

    def predict_dataloader(self):
        return self.loader(self._split("test"))


def infer_options(group) -> None:  # type: ignore[no-untyped-def]
    group.add_argument("--top_k", type=int, default=None, help="also list the k best labels")


def infer(artifact: str, input: str, output: str | None = None, batch_size: int = 64,
          top_k: int | None = None) -> list[dict]:
    from trident_core.artifact import load_artifact
    from trident_core.output import write_jsonl

    model = load_artifact(artifact)
    x = torch.load(input, weights_only=True)["x"].numpy()
    logits = model.run({"x": x})["logits"]
    rows = [{"index": i, "label": int(k)} for i, k in enumerate(logits.argmax(-1))]
    if top_k is not None:
        for row, scores in zip(rows, logits, strict=True):
            row["top_k"] = [int(k) for k in (-scores).argsort()[:top_k]]
    if output:
        write_jsonl(rows, output, "predictions.jsonl")
    return rows


def demo_inputs(data_dir: Path) -> str:
    return str(Path(data_dir) / "test.pt")


def main(args: list[str] | None = None) -> None:
    from trident_core.cli import run_domain

    run_domain(DOMAIN, args)


class SaveRankWeights(__import__("lightning").pytorch.Callback):
    """Test helper: every rank writes its final weights and the number of samples it trained on."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.seen: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == 0:
            self.seen.extend(int(v) for v in (batch[0][:, 0] * 1e4).round().tolist())

    def on_fit_end(self, trainer, pl_module) -> None:
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        torch.save({"state": pl_module.net.state_dict(), "seen": self.seen,
                    "val_loss": float(trainer.callback_metrics["val/loss"])},
                   Path(self.folder) / f"rank{trainer.global_rank}.pt")


class LossCurve(__import__("lightning").pytorch.Callback):
    """Test helper: the training loss of every step, in order."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))
