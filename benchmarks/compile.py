"""P9: `--model.compile true` (Inductor) against eager, per domain, on each domain's debug config.

Both arms run the same `fit` through the domain's CLI, in this process, with the same data and steps. Reported:
the first training step's time (for the compiled arm: Dynamo + Inductor compilation, forward and backward), and
the median time of the steady steps after the first ``warmup`` ones (recompilations for new shapes fall there).
``TRIDENT_P9_DOMAINS=nlp,audio`` limits the domains (default: all three; quick mode: nlp).
"""

from __future__ import annotations

import os
import statistics
import time

from lightning.pytorch import Callback

from benchmarks.common import Row, Settings

COMMAND = "uv run python -m benchmarks --only P9"
DOMAINS = ("nlp", "audio", "vision")


class StepTimes(Callback):
    """Wall time of every training step (batch start to batch end)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter() - self._start)


def run(settings: Settings, domains: tuple[str, ...] = DOMAINS) -> list[Row]:
    import torch

    from trident_core.cli import run_domain
    from trident_core.domain import installed_domains

    steps, warmup = settings.pick(4, 12), 2
    rows = []
    chosen = os.environ.get("TRIDENT_P9_DOMAINS")
    for domain in settings.pick(("nlp",), tuple(chosen.split(",")) if chosen else domains):
        measured = {}
        for compiled in (False, True):
            torch._dynamo.reset()
            folder = settings.workdir / f"compile-{domain}"
            args = ["fit", "--config", "debug",
                    "--trainer.default_root_dir", str(folder / ("compiled" if compiled else "eager")),
                    "--data.data_dir", str(folder / "data"), "--trainer.max_steps", str(steps),
                    "--trainer.max_epochs", "100", "--trainer.limit_train_batches", "1.0",
                    "--trainer.limit_val_batches", "0", "--export_on_fit_end.enabled", "false",
                    "--trainer.logger", "false", "--trainer.callbacks+=benchmarks.compile.StepTimes",
                    "--model.compile", "true" if compiled else "false"]
            cli = run_domain(installed_domains()[domain], args, exit_on_error=False)
            measured[compiled] = next(cb for cb in cli.trainer.callbacks if isinstance(cb, StepTimes)).times
        eager, compiled = measured[False], measured[True]
        steady_eager = statistics.median(eager[warmup:])
        steady_compiled = statistics.median(compiled[warmup:])
        rows.append(Row(
            id="P9", compare=f"{domain} debug fit step, --model.compile true vs eager (CPU)",
            baseline_name="eager", baseline=round(steady_eager * 1e3, 2), trident=round(steady_compiled * 1e3, 2),
            unit="ms/step", ratio=round(steady_eager / steady_compiled, 3),
            ratio_def="eager / compiled steady step time (higher: compile is faster)", target="report", met=None,
            command=COMMAND,
            notes=f"first step (compilation) {compiled[0]:.1f} s compiled vs {eager[0]:.2f} s eager; median of steps "
            f"{warmup + 1}..{steps}",
            extra={"eager_s": [round(t, 4) for t in eager], "compiled_s": [round(t, 4) for t in compiled]},
        ))
    return rows
