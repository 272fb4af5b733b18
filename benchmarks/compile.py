"""P9: `--model.compile true` (Inductor) against eager, per domain, on each domain's debug config.

Both arms run the same `fit` through the domain's CLI, in this process, with the same data and steps. Reported:
the first training step's time (for the compiled arm: Dynamo + Inductor compilation, forward and backward), and
the median time of the steady steps after the first ``warmup`` ones (recompilations for new shapes fall there).
``TRIDENT_P9_DOMAINS=nlp,audio`` limits the domains (default: all three; quick mode: nlp).
"""

from __future__ import annotations

import os
import time
from typing import Any

from lightning.pytorch import Callback

from benchmarks.common import Arm, PeakRss, Row, Settings, make_row

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
        measured, params, precision, rss = {}, {}, {}, {}
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
            with PeakRss() as peak:
                cli = run_domain(installed_domains()[domain], args, exit_on_error=False)
            rss[compiled] = peak.peak
            measured[compiled] = next(cb for cb in cli.trainer.callbacks if isinstance(cb, StepTimes)).times
            precision[compiled] = str(cli.trainer.precision)
            params[compiled] = sum(p.numel() for p in cli.model.parameters() if p.requires_grad)
        eager, jit = measured[False], measured[True]
        what: dict[str, Any] = {"precision": precision[False], "threads": torch.get_num_threads(),
                "data": f"{domain} debug config data", "trainable_params": params[False]}
        rows.append(make_row(
            "P9", f"{domain} debug fit step, --model.compile true vs eager (CPU)",
            Arm("eager", values=[t * 1e3 for t in eager[warmup:]], peak_rss_mb=rss[False], **what),
            Arm("--model.compile true", values=[t * 1e3 for t in jit[warmup:]], peak_rss_mb=rss[True], **what),
            "ms/step", COMMAND,
            notes=f"first step (compilation) {jit[0]:.1f} s compiled vs {eager[0]:.2f} s eager; steps "
            f"{warmup + 1}..{steps} of one run per arm paired by step (a repetition = one step); both arms in one "
            "process (eager first), peak RSS sampled while each arm's fit runs",
            extra={"compile_s": round(jit[0], 2), "eager_first_s": round(eager[0], 3)},
        ))
    return rows
