"""P1: a ``TaskModule`` through the Trident CLI and Trainer vs a hand-written PyTorch loop, as users run it.

Three arms per round, rounds interleaved: the hand-written loop, Trident (the CLI's defaults: the W&B logger, offline
in the run folder, checkpointing, progress bar, the core callbacks) and the bare Lightning Trainer (the same module,
logger and Lightning's checkpointing, none of Trident's callbacks). All train the same initial weights on the same
batches in the same order with the same optimizer and schedule. The step time is the mean over the whole run after
``WARMUP_STEPS`` (first timed batch start to the end of training, so checkpoint saving and logging steps count):
data loading, forward, backward, optimizer, scheduler and every callback and log call. The hand loop keeps every
loss (``float(loss)``, one sync per step) and saves one checkpoint (model and optimizer state) at the end; it does
not log to W&B. Trident's own share is Trident minus bare Lightning; Lightning's is bare Lightning minus the loop.
"""

from __future__ import annotations

import copy
import itertools
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import Arm, PeakRss, Row, Settings, make_row, trainable
from trident_core.data import TridentDataModule
from trident_core.domain import DomainSpec
from trident_core.module import TaskModule
from trident_core.schedule import warmup_cosine

COMMAND = "uv run python -m benchmarks --only P1"
WARMUP_STEPS = 5
_RUNS = itertools.count()

MLP_DOMAIN = DomainSpec(
    name="bench-mlp",
    module_class="benchmarks.overhead:MLPModule",
    datamodule_class="benchmarks.overhead:RandomFeatures",
    config_package="benchmarks.configs",
    monitor="train/loss",
    monitor_mode="min",
    infer="benchmarks.overhead:MLPModule",
    demo_inputs="benchmarks.overhead:MLPModule",
    demo_metrics=(),
)


class MLPModule(TaskModule):
    """Cross-entropy on a 3-layer MLP (the P1 'small MLP')."""

    def __init__(self, features: int = 256, hidden: int = 512, classes: int = 10) -> None:
        net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                            nn.Linear(hidden, classes))
        super().__init__(net)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss


class RandomFeatures(TridentDataModule):
    """Fixed random features and labels (seeded), unshuffled."""

    def __init__(self, samples: int = 8192, features: int = 256, classes: int = 10, batch_size: int = 128) -> None:
        super().__init__(batch_size=batch_size)
        gen = torch.Generator().manual_seed(0)
        self.dataset = TensorDataset(torch.randn(samples, features, generator=gen),
                                     torch.randint(0, classes, (samples,), generator=gen))

    def train_dataloader(self) -> DataLoader[Any]:
        return self.loader(self.dataset)


class StepTimer(Callback):
    """Batch-start timestamps and losses of the Trident arm."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.losses: list[float] = []

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.starts.append(time.perf_counter())

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.losses.append(float(outputs["loss"]))

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        torch.manual_seed(0)  # same dropout draws as the plain loop, which seeds at the same point

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.starts.append(time.perf_counter())


class StopAtTarget(Callback):
    """Stops the fit when a validation metric first reaches ``target``; records each (seconds, value) and when."""

    def __init__(self, metric: str, target: float) -> None:
        self.metric, self.target = metric, target
        self.evals: list[tuple[float, float]] = []
        self.reached: float | None = None
        self.start = 0.0

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.start = time.perf_counter()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.metric])
        elapsed = time.perf_counter() - self.start
        self.evals.append((round(elapsed, 1), round(value, 4)))
        if value >= self.target and self.reached is None:
            self.reached = elapsed
            trainer.should_stop = True


def _run_cli(spec: DomainSpec, args: list[str], before_fit: Any) -> Any:
    """Run ``fit`` through TridentCLI; ``before_fit(cli)`` runs once the objects exist, before training."""
    from trident_core.callbacks import ExportOnFitEnd
    from trident_core.cli import TridentCLI, expand_args

    class BenchCLI(TridentCLI):
        def before_fit(self) -> None:
            # the artifact export at fit end is not part of a training step; keep it out of the wall time
            self.trainer.callbacks = [cb for cb in self.trainer.callbacks if not isinstance(cb, ExportOnFitEnd)]
            before_fit(self)

    return BenchCLI(spec, expand_args(spec, ["fit", *args]))


def _plain_loop(
    module: TaskModule, loader: DataLoader[Any], steps: int, step_fn: Any, clip: float | None = None,
    checkpoint: Path | None = None,
) -> tuple[list[float], list[float]]:
    """What a user writes by hand: the same optimizer, schedule, loss and gradient clipping, no framework."""
    # the optimizer of both configs here (TaskModule's default and nlp's default.yaml): fused AdamW
    optimizer = torch.optim.AdamW(module.param_groups(), lr=1e-3, weight_decay=0.01, fused=True)
    scheduler = warmup_cosine(optimizer, steps, int(steps * module.warmup_ratio))
    module.train()
    torch.manual_seed(0)
    starts, losses = [], []
    done = 0
    while done < steps:
        for batch in loader:
            starts.append(time.perf_counter())
            loss = step_fn(module, batch)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            losses.append(float(loss))
            done += 1
            if done == steps:
                break
    if checkpoint is not None:
        torch.save({"model": module.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "step": done}, checkpoint)
    starts.append(time.perf_counter())
    return starts, losses


def _mean_step(starts: list[float]) -> float:
    """Mean step time from the first timed batch start to the end of training (the last entry)."""
    return (starts[-1] - starts[WARMUP_STEPS]) / (len(starts) - 1 - WARMUP_STEPS)


def _compare(name: str, spec: DomainSpec, args: list[str], steps: int, rounds: int, step_fn: Any,
             loader_of: Any, root: Path) -> list[Row]:
    from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary, TQDMProgressBar

    ms: dict[str, list[float]] = {"plain": [], "trident": [], "lightning": []}
    rss = {k: 0.0 for k in ms}
    loss_diffs: list[float] = []
    info: dict[str, Any] = {}
    for _ in range(rounds):
        timer = StepTimer()
        plain: dict[str, list[float]] = {}

        def before_fit(cli: Any, timer: StepTimer = timer, plain: dict[str, list[float]] = plain) -> None:
            cli.trainer.callbacks.append(timer)
            for layer in cli.model.modules():  # dropout off in all arms, so equal steps give equal losses
                if isinstance(layer, nn.Dropout):
                    layer.p = 0.0
            baseline = copy.deepcopy(cli.model)
            cli.datamodule.prepare_data()
            cli.datamodule.setup("fit")
            torch.manual_seed(0)
            with PeakRss() as peak:
                plain["starts"], plain["losses"] = _plain_loop(
                    baseline, loader_of(cli.datamodule), steps, step_fn, clip=cli.trainer.gradient_clip_val,
                    checkpoint=root / f"plain{next(_RUNS)}.pt")
            rss["plain"] = max(rss["plain"], peak.peak)
            info.update(clip=cli.trainer.gradient_clip_val, precision=str(cli.trainer.precision),
                        trainable=trainable(cli.model), batch=cli.datamodule.batch_size,
                        callbacks=[type(cb).__name__ for cb in cli.trainer.callbacks],
                        logger=type(cli.trainer.logger).__name__)
            torch.manual_seed(0)

        with PeakRss() as peak:
            _run_cli(spec, [*args, f"--trainer.max_steps={steps}",
                            f"--trainer.default_root_dir={root / f'run{next(_RUNS)}'}"], before_fit)
        rss["trident"] = max(rss["trident"], peak.peak)
        bare = StepTimer()

        def lightning_only(cli: Any, bare: StepTimer = bare) -> None:
            # what a plain Lightning Trainer has by default: its progress bar and model summary; the same
            # ModelCheckpoint instances (Lightning's class) so both arms save the same checkpoints
            cli.trainer.callbacks = [bare, TQDMProgressBar(), ModelSummary(),
                                     *(cb for cb in cli.trainer.callbacks if type(cb) is ModelCheckpoint)]

        with PeakRss() as peak:
            _run_cli(spec, [*args, f"--trainer.max_steps={steps}",
                            f"--trainer.default_root_dir={root / f'run{next(_RUNS)}'}"], lightning_only)
        rss["lightning"] = max(rss["lightning"], peak.peak)
        for key, starts in (("plain", plain["starts"]), ("trident", timer.starts), ("lightning", bare.starts)):
            ms[key].append(_mean_step(starts) * 1e3)
        n = min(len(timer.losses), len(plain["losses"]))
        loss_diffs.append(max(abs(a - b) for a, b in zip(timer.losses[:n], plain["losses"][:n], strict=True)))
    what: dict[str, Any] = {"precision": info["precision"], "trainable_params": info["trainable"],
                            "batch": info["batch"], "threads": 1, "data": f"{steps} steps of the same batches"}
    arms = {"plain": Arm("hand-written PyTorch loop (+ one checkpoint)", values=ms["plain"],
                         peak_rss_mb=rss["plain"], **what),
            "trident": Arm(f"Trident CLI defaults ({info['logger']} offline, callbacks {info['callbacks']})",
                           values=ms["trident"], peak_rss_mb=rss["trident"], **what),
            "lightning": Arm("bare Lightning Trainer (same module, logger and ModelCheckpoints; Lightning's "
                             "default progress bar and summary)",
                             values=ms["lightning"], peak_rss_mb=rss["lightning"], **what)}
    shares = [t - b for t, b in zip(ms["trident"], ms["lightning"], strict=True)]
    lightning_share = [b - p for b, p in zip(ms["lightning"], ms["plain"], strict=True)]
    notes = (f"{steps} steps x {rounds} interleaved rounds, mean step after {WARMUP_STEPS} warm-up steps to the end "
             f"of training (checkpoint saves and logging steps included); 1 intra-op thread; dropout off; same loss, "
             f"optimizer, schedule and gradient clipping ({info['clip']}); largest per-step loss difference "
             f"{max(loss_diffs):.2e}; Trident's own share (Trident - bare Lightning) "
             f"{statistics.median(shares):.3f} ms/step (range {min(shares):.3f}..{max(shares):.3f}), Lightning's "
             f"share (bare Lightning - loop) {statistics.median(lightning_share):.3f} ms/step; peak RSS sampled "
             "per arm in one process")
    extra = {"max_loss_diff": loss_diffs, "trident_share_ms": shares, "lightning_share_ms": lightning_share}
    return [
        make_row("P1", f"step time, {name}", arms["plain"], arms["trident"], "ms/step", COMMAND,
                 ratio="trident / baseline", target=("<=", 1.03) if max(loss_diffs) < 1e-4 else ("<=", 0.0),
                 target_text="ratio <= 1.03 (and equal losses)", notes=notes, extra=extra,
                 more_arms=(arms["lightning"],)),
        make_row("P1", f"Trident's own share of the step, {name}", arms["lightning"], arms["trident"], "ms/step",
                 COMMAND, ratio="trident / baseline", target=("<=", 0.1), target_on="difference",
                 target_text="Trident - bare Lightning <= 0.1 ms/step", notes=notes, extra=extra),
    ]


def _mlp_step(module: TaskModule, batch: Any) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(module.net(x), y)


def _nlp_step(module: Any, batch: Any) -> torch.Tensor:
    logits = module.net(batch["input_ids"], batch["attention_mask"])
    return F.cross_entropy(logits, batch["labels"], label_smoothing=module.label_smoothing)


def run(settings: Settings) -> list[Row]:
    steps = settings.pick(12, 200)
    rounds = settings.pick(1, 3)
    threads = torch.get_num_threads()
    # one intra-op thread in both arms: on the shared 2-core machine, 2-thread step times are dominated by
    # threads waiting for each other under the other users' load, which hides the framework's own overhead
    torch.set_num_threads(1)
    saved = {k: os.environ.get(k) for k in ("WANDB_MODE", "WANDB_DIR", "WANDB_SILENT")}
    os.environ.update(WANDB_MODE="offline", WANDB_DIR=str(settings.workdir / "P1"), WANDB_SILENT="true")
    try:
        return _run_both(settings, steps, rounds)
    finally:
        torch.set_num_threads(threads)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run_both(settings: Settings, steps: int, rounds: int) -> list[Row]:
    root = settings.workdir / "P1"
    # as users run it: the default W&B logger (offline, in the run folder), progress bar, model summary
    common = ['--trainer.logger={"class_path": "trident_core.tracking.TridentWandbLogger", '
              '"init_args": {"project": "trident-bench"}}']
    rows = _compare("small MLP (256-512-512-10, batch 128)", MLP_DOMAIN, common, steps, rounds, _mlp_step,
                    lambda dm: dm.train_dataloader(), root)
    from trident_nlp.cli import DOMAIN as NLP

    nlp_args = ["--config", "debug", *common, f"--data.data_dir={root}/nlp_data", "--trainer.limit_train_batches=1.0",
                "--trainer.limit_val_batches=0", "--trainer.max_epochs=-1",
                "--trainer.log_every_n_steps=20"]  # the default recipe's logging interval (debug logs every step)
    rows += _compare("NLP tiny model (debug config: 1-layer 32-wide BERT, batch 16)", NLP, nlp_args, steps,
                     rounds, _nlp_step, lambda dm: dm.train_dataloader(), root)
    return rows
