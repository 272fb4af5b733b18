"""The sweep's side inside a trial's ``fit`` process: Optuna pruning per validation epoch, and the objective file.

``trident-<d> sweep`` runs every trial as ``python -m <domain> fit ... --trainer.callbacks+=
trident_core.callbacks.sweep_trial.SweepTrial`` (a subprocess, so a trial may be DDP: Lightning's launcher re-runs
that command line in each process). This callback talks to the sweep's SQLite study from the trial process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from trident_core.output import write_text_atomic

RESULT = "sweep-trial.json"


class SweepTrial(Callback):
    """Report the monitored metric to an Optuna trial after every validation epoch; stop the run when pruned.

    Rank 0 reports and asks the pruner; the decision is broadcast so every DDP process stops together. When ``fit``
    ends, rank 0 writes ``<default_root_dir>/sweep-trial.json``: ``{"value", "checkpoint", "pruned", "epoch"}``
    (value: the best ``checkpoint.monitor`` score), which the sweep reads back as the trial's objective.

    Args:
        storage: The study's storage URL (``sqlite:///.../study.db``).
        study: The study name.
        trial: The trial number.
        prune: Ask the pruner after each report (``False``: report only).
        n_startup_trials: MedianPruner's finished trials before it prunes.
        n_warmup_steps: MedianPruner's validation epochs of a trial before it may be pruned.
    """

    def __init__(self, storage: str, study: str, trial: int, prune: bool = True, n_startup_trials: int = 5,
                 n_warmup_steps: int = 0) -> None:
        self.storage, self.study, self.trial = storage, study, trial
        self.prune, self.n_startup_trials, self.n_warmup_steps = prune, n_startup_trials, n_warmup_steps
        self.pruned_at: int | None = None
        self._trial: Any = None

    def _optuna_trial(self) -> Any:
        """The running trial, or ``None`` once it has finished (a rerun of a trial's config.yaml reports nothing)."""
        if self._trial is None:
            import optuna

            storage = optuna.storages.RDBStorage(self.storage)
            pruner = optuna.pruners.MedianPruner(self.n_startup_trials, self.n_warmup_steps)
            study = optuna.load_study(study_name=self.study, storage=storage, pruner=pruner)
            study_id = storage.get_study_id_from_name(self.study)
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.trial)
            running = storage.get_trial(trial_id).state == optuna.trial.TrialState.RUNNING
            self._trial = optuna.Trial(study, trial_id) if running else False
        return self._trial or None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        monitor = getattr(checkpoint, "monitor", None)  # a ModelCheckpoint's; Checkpoint declares none
        if trainer.sanity_checking or monitor is None:
            return
        prune = False
        if trainer.is_global_zero:
            score = trainer.callback_metrics.get(monitor)
            if score is not None:
                trial = self._optuna_trial()
                if trial is not None:
                    trial.report(float(score), trainer.current_epoch)
                    prune = self.prune and trial.should_prune()
        if trainer.strategy.broadcast(prune, src=0):
            self.pruned_at = trainer.current_epoch
            trainer.should_stop = True

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        checkpoint = trainer.checkpoint_callback
        score = getattr(checkpoint, "best_model_score", None)
        monitor = getattr(checkpoint, "monitor", None)
        if score is None and monitor:
            score = trainer.callback_metrics.get(monitor)
        result = {"value": None if score is None else float(score),
                  "checkpoint": getattr(checkpoint, "best_model_path", "") or "",
                  "pruned": self.pruned_at is not None, "epoch": self.pruned_at}
        write_text_atomic(Path(trainer.default_root_dir) / RESULT, json.dumps(result, indent=2) + "\n")
