"""P1 ablation: which part of the framework's per-step cost do Trident's defaults control?

Runs P1's small MLP (200 steps, 1 intra-op thread) through the Trident CLI with one default changed at a time
(progress bar off or refreshed every 10 steps, W&B logger off, both off, logging every 1000 steps), 3 interleaved
rounds, next to the hand-written loop; prints each variant's per-round mean step time (ms) and its median.

    uv run python -m benchmarks.p1_ablation
"""

from __future__ import annotations

import copy
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks import overhead as ov

STEPS = 200
WANDB = ['--trainer.logger={"class_path": "trident_core.tracking.TridentWandbLogger", '
         '"init_args": {"project": "p1-ablation"}}']
VARIANTS = {
    "CLI defaults": WANDB,
    "no progress bar": [*WANDB, "--trainer.enable_progress_bar=false"],
    "TQDM bar, refresh every 10 steps": [*WANDB, "--trainer.callbacks+=lightning.pytorch.callbacks.TQDMProgressBar",
                                         "--trainer.callbacks.refresh_rate=10"],
    "no logger": ["--trainer.logger=false"],
    "no logger, no progress bar": ["--trainer.logger=false", "--trainer.enable_progress_bar=false"],
    "log_every_n_steps 1000": [*WANDB, "--trainer.log_every_n_steps=1000"],
}


def main() -> None:
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="p1-ablation-"))
    os.environ.update(WANDB_MODE="offline", WANDB_DIR=str(root), WANDB_SILENT="true")
    steps: dict[str, list[float]] = {"hand-written loop": [], **{name: [] for name in VARIANTS}}
    for round_ in range(3):
        for name, args in VARIANTS.items():
            timer = ov.StepTimer()

            def before_fit(cli: Any, timer: ov.StepTimer = timer, name: str = name, round_: int = round_) -> None:
                cli.trainer.callbacks.append(timer)
                if name == "CLI defaults":  # the loop once per round, on a copy of the same initial weights
                    cli.datamodule.setup("fit")
                    starts, _ = ov._plain_loop(copy.deepcopy(cli.model), cli.datamodule.train_dataloader(), STEPS,
                                               ov._mlp_step, clip=cli.trainer.gradient_clip_val,
                                               checkpoint=root / f"plain{round_}.pt")
                    steps["hand-written loop"].append(ov._mean_step(starts) * 1e3)

            folder = root / f"{round_}-{name.replace(' ', '_').replace(',', '')}"
            ov._run_cli(ov.MLP_DOMAIN, [*args, f"--trainer.max_steps={STEPS}", f"--trainer.default_root_dir={folder}"],
                        before_fit)
            steps[name].append(ov._mean_step(timer.starts) * 1e3)
    for name, values in steps.items():
        print(f"{name:34s} {statistics.median(values):6.2f} ms/step  rounds {[round(v, 2) for v in values]}")


if __name__ == "__main__":
    main()
