"""P1: a ``TaskModule`` through the Trident CLI and Trainer vs a hand-written PyTorch loop.

Both arms train the same initial weights on the same batches in the same order with the same optimizer and
schedule; the step time is the median interval between consecutive batch starts (data loading, forward,
backward, optimizer, scheduler and, for Trident, every callback and log call), after a warm-up.
"""

from __future__ import annotations

import copy
import itertools
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import Row, Settings, peak_rss_mb, reset_peak_rss
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
    module: TaskModule, loader: DataLoader[Any], steps: int, step_fn: Any, clip: float | None = None
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
    starts.append(time.perf_counter())
    return starts, losses


def _intervals(starts: list[float]) -> list[float]:
    return [b - a for a, b in zip(starts[WARMUP_STEPS:], starts[WARMUP_STEPS + 1 :], strict=False)]


def _compare(name: str, spec: DomainSpec, args: list[str], steps: int, rounds: int, step_fn: Any,
             loader_of: Any, root: Path, ablate: bool = False) -> Row:
    ratios, trident_steps, plain_steps, loss_diffs, rss = [], [], [], [], {"trident": 0.0, "plain": 0.0}
    first = {}
    lightning_only: list[float] = []
    clip: list[float | None] = [None]
    for _ in range(rounds):
        timer = StepTimer()
        plain: dict[str, list[float]] = {}

        def before_fit(cli: Any, timer: StepTimer = timer, plain: dict[str, list[float]] = plain) -> None:
            cli.trainer.callbacks.append(timer)
            for layer in cli.model.modules():  # dropout off in both arms, so equal steps give equal losses
                if isinstance(layer, nn.Dropout):
                    layer.p = 0.0
            baseline = copy.deepcopy(cli.model)
            cli.datamodule.prepare_data()
            cli.datamodule.setup("fit")
            torch.manual_seed(0)
            reset_peak_rss()
            plain["starts"], plain["losses"] = _plain_loop(baseline, loader_of(cli.datamodule), steps, step_fn,
                                                           clip=cli.trainer.gradient_clip_val)
            clip[0] = cli.trainer.gradient_clip_val
            rss["plain"] = max(rss["plain"], peak_rss_mb() or 0)
            torch.manual_seed(0)
            reset_peak_rss()

        run_dir = root / f"run{next(_RUNS)}"
        _run_cli(spec, [*args, f"--trainer.max_steps={steps}", f"--trainer.default_root_dir={run_dir}"], before_fit)
        rss["trident"] = max(rss["trident"], peak_rss_mb() or 0)
        if ablate:  # the same module on a Lightning Trainer without Trident's callbacks: Lightning's own share
            bare = StepTimer()

            def drop_callbacks(cli: Any, bare: StepTimer = bare) -> None:
                cli.trainer.callbacks = [bare]

            run_dir = root / f"run{next(_RUNS)}"
            _run_cli(spec, [*args, f"--trainer.max_steps={steps}", f"--trainer.default_root_dir={run_dir}"],
                     drop_callbacks)
            lightning_only.append(statistics.median(_intervals(bare.starts)))
        plain_starts, plain_losses = plain["starts"], plain["losses"]
        t = statistics.median(_intervals(timer.starts))
        p = statistics.median(_intervals(plain_starts))
        trident_steps.append(t)
        plain_steps.append(p)
        ratios.append(t / p)
        n = min(len(timer.losses), len(plain_losses))
        loss_diffs.append(max(abs(a - b) for a, b in zip(timer.losses[:n], plain_losses[:n], strict=True)))
        first = {"trident_losses": timer.losses[:10], "plain_losses": plain_losses[:10]}
    ratio = statistics.median(ratios)
    t, p = statistics.median(trident_steps), statistics.median(plain_steps)
    return Row(
        id="P1", compare=f"step time, {name}", baseline_name="hand-written PyTorch loop", baseline=round(p * 1e3, 3),
        trident=round(t * 1e3, 3), unit="ms/step", ratio=round(ratio, 3),
        ratio_def="trident / baseline step time (lower is better)", target="<= 1.02, equal losses",
        met=ratio <= 1.02 and max(loss_diffs) < 1e-4, command=COMMAND,
        notes=f"{steps} steps x {rounds} rounds, median step interval after {WARMUP_STEPS} warm-up steps, median of "
        f"per-round ratios; 1 intra-op thread in both arms; dropout off in both; same loss, optimizer, schedule and "
        f"gradient clipping ({clip[0]}) in both; largest per-step loss difference "
        f"{max(loss_diffs):.2e}; "
        + (f"Lightning Trainer alone (same module and self.log, no callbacks) "
           f"{statistics.median(lightning_only) * 1e3:.2f} ms/step; " if lightning_only else "")
        + f"peak RSS MiB plain {rss['plain']:.0f} / Trident {rss['trident']:.0f}",
        extra={"ratios": ratios, "trident_ms": [x * 1e3 for x in trident_steps],
               "plain_ms": [x * 1e3 for x in plain_steps],
               "lightning_only_ms": [x * 1e3 for x in lightning_only], "max_loss_diff": loss_diffs, **first,
               "rss_mb": rss},
    )


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
    try:
        return _run_both(settings, steps, rounds)
    finally:
        torch.set_num_threads(threads)


def _run_both(settings: Settings, steps: int, rounds: int) -> list[Row]:
    root = settings.workdir / "P1"
    common = ["--trainer.enable_progress_bar=false",
              "--trainer.enable_model_summary=false"]
    rows = [_compare("small MLP (256-512-512-10, batch 128)", MLP_DOMAIN, common, steps, rounds, _mlp_step,
                     lambda dm: dm.train_dataloader(), root, ablate=True)]
    from trident_nlp.cli import DOMAIN as NLP

    nlp_args = ["--config", "debug", *common, f"--data.data_dir={root}/nlp_data", "--trainer.limit_train_batches=1.0",
                "--trainer.limit_val_batches=0", "--trainer.logger=false", "--trainer.max_epochs=-1",
                "--trainer.log_every_n_steps=20"]  # the default recipe's logging interval (debug logs every step)
    rows.append(_compare("NLP tiny model (debug config: 1-layer 32-wide BERT, batch 16)", NLP, nlp_args, steps,
                         rounds, _nlp_step, lambda dm: dm.train_dataloader(), root, ablate=True))
    return rows
