"""P4: vision training, Trident's default recipe vs a plain MONAI ``Dataset`` + ``DataLoader`` loop.

The default recipe (UNet 16-32-64-128, 48^3 patches at 1.5 mm, batch 2, on the embedded phantoms): the epoch time
over two epochs per arm (the first counted as warm-up), and the wall time until the held-out validation mean Dice
reaches ``TARGET_DICE``, both arms validating every 5 epochs by sliding window. The baseline is MONAI's tutorial
loop: the same transforms through a plain ``monai.data.Dataset`` and a ``DataLoader`` (2 workers, the machine's
cores), same network, loss and AdamW settings (PyTorch's default for-loop kernel and memory order, as in the
tutorials) and number of steps, no learning-rate schedule.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from benchmarks.common import Row, Settings, peak_rss_mb, reset_peak_rss

COMMAND = "uv run python -m benchmarks --only P4"
TARGET_DICE = 0.85
VAL_EVERY = 5  # the default recipe's check_val_every_n_epoch
BASELINE_BUDGET_S = 900  # the plain loop stops here if it has not reached the target (the row then says so)


class EpochTimer(Callback):
    def __init__(self) -> None:
        self.epochs: list[float] = []
        self.start = 0.0
        self.fit_start = time.perf_counter()
        self.setup_s = 0.0

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.setup_s = time.perf_counter() - self.fit_start

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.epochs.append(time.perf_counter() - self.start)


def _tutorial_net(net: torch.nn.Module) -> torch.nn.Module:
    """The same weights as Trident's network, in PyTorch's default memory order (as a MONAI tutorial has them;
    Trident keeps them channels-last)."""
    return copy.deepcopy(net).to(memory_format=torch.contiguous_format)


def _plain_monai(dm: Any, net: torch.nn.Module, epochs: int, limit: int | None, workers: int,
                 target: float | None = None, budget_s: float = BASELINE_BUDGET_S,
                 bf16: bool = False) -> dict[str, Any]:
    """MONAI's tutorial training loop; with ``target``, validation every ``VAL_EVERY`` epochs (sliding window,
    ``DiceMetric``) until the mean foreground Dice reaches it or ``budget_s`` runs out. ``bf16`` wraps the forward
    pass and loss in ``torch.autocast`` (MONAI's AMP tutorials do this with float16 on GPUs)."""
    from monai.data import DataLoader, Dataset, list_data_collate
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss
    from monai.metrics import DiceMetric
    from monai.networks.utils import one_hot

    from trident_vision.transforms import eval_transforms, train_transforms

    transform = train_transforms(dm.preprocessing, dm.roi_size, dm.num_samples, dm.pos, dm.neg, dm.augment)
    dataset = Dataset(dm.splits()["train"], transform)
    loader = DataLoader(dataset, batch_size=dm.batch_size, shuffle=True, num_workers=workers,
                        collate_fn=list_data_collate, persistent_workers=workers > 0)
    val_loader = DataLoader(Dataset(dm.splits()["val"], eval_transforms(dm.preprocessing)), batch_size=1,
                            num_workers=workers, persistent_workers=workers > 0)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-5)
    dice_metric = DiceMetric(include_background=False, reduction="mean_batch", ignore_empty=True)
    times, evals, reached = [], [], None
    start_all = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        start = time.perf_counter()
        for step, batch in enumerate(loader):
            if limit is not None and step >= limit:
                break
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(net(batch["image"]), batch["label"])
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
        if target is None or (epoch + 1) % VAL_EVERY:
            continue
        net.eval()
        with torch.inference_mode():
            for batch in val_loader:
                logits = sliding_window_inference(batch["image"], dm.roi_size, 4, net, overlap=0.25, mode="gaussian")
                classes = logits.shape[1]
                dice_metric(one_hot(logits.argmax(1, keepdim=True), classes),
                            one_hot(batch["label"].long(), classes))
        per_class = dice_metric.aggregate()
        dice_metric.reset()
        dice = float(per_class[torch.isfinite(per_class)].mean())
        elapsed = time.perf_counter() - start_all
        evals.append((round(elapsed, 1), round(dice, 4)))
        if dice >= target:
            reached = elapsed
            break
        if elapsed > budget_s:
            break
    return {"epochs": times, "evals": evals, "reached": reached, "ran_s": time.perf_counter() - start_all}


def run(settings: Settings) -> list[Row]:
    from benchmarks.overhead import _run_cli
    from trident_vision.cli import DOMAIN

    epochs = settings.pick(2, 2)
    root = settings.workdir / "P4"
    args = [f"--data.data_dir={root}/data", f"--trainer.max_epochs={epochs}", f"--trainer.default_root_dir={root}/t",
            "--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--trainer.limit_val_batches=0"]
    limit = None
    workers = 2
    if settings.quick:
        limit = 2
        args += ["--config", "debug", f"--trainer.limit_train_batches={limit}", "--trainer.limit_val_batches=0"]
    timer = EpochTimer()
    plain: dict[str, Any] = {}

    def before_fit(cli: Any) -> None:
        cli.trainer.callbacks.append(timer)
        dm = cli.datamodule
        dm.prepare_data()
        torch.manual_seed(0)
        reset_peak_rss()
        plain["epochs"] = _plain_monai(dm, _tutorial_net(cli.model.net), epochs, limit, workers)["epochs"]
        plain["rss"] = peak_rss_mb()
        torch.manual_seed(0)
        plain["bf16_epochs"] = _plain_monai(dm, _tutorial_net(cli.model.net), epochs, limit, workers,
                                            bf16=True)["epochs"]
        plain["steps_per_epoch"] = len(dm.splits()["train"]) // dm.batch_size
        reset_peak_rss()
        timer.fit_start = time.perf_counter()

    cli = _run_cli(DOMAIN, args, before_fit)
    trident_rss = peak_rss_mb()
    t = statistics.median(timer.epochs[1:] or timer.epochs)
    b = statistics.median(plain["epochs"][1:] or plain["epochs"])
    b16 = statistics.median(plain["bf16_epochs"][1:] or plain["bf16_epochs"])
    notes = (f"{epochs} epochs per arm, first one warm-up, median of the rest; Trident precision "
             f"{cli.trainer.precision}; Trident's cache fill (setup) {timer.setup_s:.1f} s is not in its epoch time; "
             f"baseline DataLoader num_workers={workers}; peak RSS MiB plain {plain['rss']:.0f} / Trident "
             f"{trident_rss or 0:.0f}")
    return [
        Row(id="P4", compare="vision epoch time, default recipe", baseline_name="plain MONAI Dataset + DataLoader loop",
            baseline=round(b, 2), trident=round(t, 2), unit="s/epoch", ratio=round(b / t, 3),
            ratio_def="baseline / trident (higher is faster)", target="report (3x is the time-to-target goal)",
            met=None, command=COMMAND, notes=notes,
            extra={"trident_epochs_s": timer.epochs, "plain_epochs_s": plain["epochs"], "setup_s": timer.setup_s}),
        Row(id="P4", compare="vision epoch time, default recipe",
            baseline_name="plain MONAI loop with bf16 torch.autocast", baseline=round(b16, 2), trident=round(t, 2),
            unit="s/epoch", ratio=round(b16 / t, 3), ratio_def="baseline / trident (higher is faster)",
            target="report", met=None, command=COMMAND, notes=notes + "; the baseline at Trident's precision",
            extra={"plain_bf16_epochs_s": plain["bf16_epochs"]}),
        _time_to_target(settings, root, workers),
    ]


def _time_to_target(settings: Settings, root: Any, workers: int) -> Row:
    """Both arms from the same initial weights until validation mean Dice >= TARGET_DICE (or the budget)."""
    from benchmarks.overhead import StopAtTarget, _run_cli
    from trident_vision.cli import DOMAIN

    target = settings.pick(0.0, TARGET_DICE)
    max_epochs = settings.pick(VAL_EVERY, 50)  # the default recipe's 50 epochs
    args = ["--config", "debug"] if settings.quick else []  # first: later arguments override it
    args += [f"--data.data_dir={root}/data", f"--trainer.max_epochs={max_epochs}",
             f"--trainer.default_root_dir={root}/tt", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
             "--trainer.enable_model_summary=false", f"--trainer.check_val_every_n_epoch={VAL_EVERY}"]
    limit = None
    if settings.quick:
        limit = 1
        args += [f"--trainer.limit_train_batches={limit}", "--trainer.limit_val_batches=1"]
    stop = StopAtTarget("val/dice", target)
    plain: dict[str, Any] = {}

    def before_fit(cli: Any) -> None:
        cli.trainer.callbacks.append(stop)
        cli.datamodule.prepare_data()
        torch.manual_seed(0)
        plain.update(_plain_monai(cli.datamodule, _tutorial_net(cli.model.net), max_epochs, limit, workers,
                                  target))
        torch.manual_seed(0)

    cli = _run_cli(DOMAIN, args, before_fit)
    base = plain["reached"] if plain["reached"] is not None else plain["ran_s"]
    ratio = base / stop.reached if stop.reached else None
    notes = ("" if plain["reached"] is not None else f"baseline did not reach the target in {plain['ran_s']:.0f} s "
             f"(budget {BASELINE_BUDGET_S} s or {max_epochs} epochs): its figure is the time it ran, so the ratio "
             "is a lower bound; ")
    notes += (f"from the start of training, validation every {VAL_EVERY} epochs included; same initial weights; "
              f"Trident precision {cli.trainer.precision}, baseline float32; "
              f"(seconds, val mean Dice) per validation: plain {plain['evals']}, Trident {stop.evals}")
    return Row(id="P4", compare=f"vision wall time to held-out mean Dice {target}", baseline_name="plain MONAI loop",
               baseline=round(base, 1), trident=round(stop.reached, 1) if stop.reached else None, unit="s",
               ratio=round(ratio, 3) if ratio else None, ratio_def="baseline / trident (higher is faster)",
               target=">= 3x", met=(ratio >= 3) if ratio else None, command=COMMAND, notes=notes,
               extra={"plain": plain, "trident_evals": stop.evals})
