"""Export the best checkpoint's weights as an artifact when ``fit`` ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger

from trident_core.export import ExportResult, export_artifact, load_checkpoint
from trident_core.tracking import folder_files, log_kept_files

if TYPE_CHECKING:
    from trident_core.module import TaskModule

log = logging.getLogger(__name__)


class ExportOnFitEnd(Callback):
    """At the end of ``fit``, write the artifact of the best checkpoint (or of the final weights).

    The live module's weights are restored afterwards, so a following ``trainer.test`` is unaffected.
    On W&B the artifact folder is logged as a ``model`` artifact (hard links, no copies).

    Args:
        output: Artifact folder; default ``<trainer.default_root_dir>/artifact``.
        use_best: Export the best checkpoint of the ModelCheckpoint callback when there is one.
        domain: Domain name written into the metadata.
        enabled: ``False`` skips the export (quick debug runs); ``trident-<domain> export`` can do it later.
    """

    def __init__(
        self, output: str | None = None, use_best: bool = True, domain: str = "", enabled: bool = True
    ) -> None:
        self.enabled = enabled
        self.output = output
        self.use_best = use_best
        self.domain = domain
        self.result: ExportResult | None = None

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.enabled or not trainer.is_global_zero or trainer.interrupted:
            return
        output = Path(self.output or Path(trainer.default_root_dir) / "artifact")
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") if self.use_best else ""
        current = None
        if best and Path(best).is_file():
            current = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
            pl_module.load_state_dict(load_checkpoint(best)["state_dict"])
        was_training = pl_module.training
        try:
            spec = cast("TaskModule", pl_module).export_spec()  # the TaskModule contract
            self.result = export_artifact(spec, output, metrics=metrics, domain=self.domain)
        finally:
            if current is not None:
                pl_module.load_state_dict(current)
            pl_module.train(was_training)
        log.info("artifact written to %s", output)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):  # the files as written, without copies
                name = f"{self.domain or 'trident'}-artifact-{logger.version}"
                log_kept_files(logger, name, "model", folder_files(output), output)
