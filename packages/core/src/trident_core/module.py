"""``TaskModule``: the one LightningModule base every domain (and every library user) builds on."""

from __future__ import annotations

import inspect
import logging
import math
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities import GradClipAlgorithmType
from lightning.pytorch.utilities.data import extract_batch_size
from torch import nn
from torchmetrics import MetricCollection

from trident_core.compile import compile_in_place, compile_options
from trident_core.errors import CheckpointError, ConfigError
from trident_core.schedule import warmup_cosine

if TYPE_CHECKING:
    from trident_core.export import ExportSpec

# LightningCLI's own callable types: jsonargparse turns `class_path` + `init_args` configs into these.
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

_INJECTED = ["net", "optimizer", "scheduler"]
# 2: one "trident" key holds the W&B run id, metrics and the domain's extras; nlp modules receive `net`
CHECKPOINT_VERSION = 2
log = logging.getLogger(__name__)


class TaskModule(LightningModule):
    """A training system around a plain ``nn.Module`` (dependency injection, Lightning style).

    Subclasses add the loss, the steps and the metrics; this base owns the optimizer and schedule,
    per-stage metric clones, checkpoint extras and the export hook.

    Args:
        net: The model. A plain ``nn.Module`` that never imports Lightning.
        optimizer: Callable that builds the optimizer from parameter groups (LightningCLI
            ``OptimizerCallable``). Default: ``AdamW(lr=1e-3, weight_decay=0.01)``, fused when the parameters allow.
        scheduler: Callable that builds a per-step LR scheduler from the optimizer. Default: linear warmup
            over ``warmup_ratio`` of the training steps, then cosine decay to zero.
        warmup_ratio: Fraction of all training steps used for warmup by the default scheduler.
        lr: Base learning rate; replaces the optimizer's ``lr`` and scales parameter groups that have their own
            by the same factor (``None``: the optimizer's). Lightning's ``LearningRateFinder`` sets it.
        compile: ``torch.compile`` the network in place when training or evaluation starts: ``True``, or a dict of
            ``torch.compile`` options (``{mode: max-autotune, dynamic: false}``). Checkpoints keep plain weights,
            export traces the eager network, and a failed compilation warns and runs eagerly.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        warmup_ratio: float = 0.06,
        lr: float | None = None,
        compile: bool | dict[str, Any] = False,
    ) -> None:
        super().__init__()
        if lr is not None and not lr > 0:
            raise ConfigError(f"model.lr must be > 0 (or null for the optimizer's own), got {lr}")
        self.compile_options = compile_options(compile)
        # Built by LightningCLI, the hyperparameters are the config (class_path + values), so the checkpoint can
        # rebuild everything with weights_only loading. Built in Python, the injected objects are not plain values
        # and are left out (save_hyperparameters below tells the two apart).
        self.save_hyperparameters(ignore=_INJECTED)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.warmup_ratio = warmup_ratio
        self.lr = lr
        # (lr, batches per epoch) that the optimizer and schedule were built for; see on_fit_start
        self._built_for: tuple[float | None, Any] | None = None
        self.train_metrics: MetricCollection | None = None
        self.val_metrics: MetricCollection | None = None
        self.test_metrics: MetricCollection | None = None
        self._batchnorms: list[nn.Module] | None = None

    def save_hyperparameters(self, *args: Any, ignore: Any = None, frame: Any = None, logger: bool = True) -> None:
        """Lightning's ``save_hyperparameters``, except that under LightningCLI the injected net, optimizer and
        scheduler configs are always kept: they are what rebuilds the module from a checkpoint."""
        # No public API tells a module that LightningCLI builds it: Lightning's private context variable holds the
        # given config while it does (tests/core/test_hparams_pin.py fails if an upgrade changes that).
        if _given_hyperparameters.get() is not None and ignore is not None:
            names = [ignore] if isinstance(ignore, str) else list(ignore)
            ignore = [n for n in names if n not in _INJECTED]
        if frame is None:
            frame = inspect.currentframe().f_back  # type: ignore[union-attr]
        super().save_hyperparameters(*args, ignore=ignore, frame=frame, logger=logger)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Inference: delegates to the wrapped network."""
        return self.net(*args, **kwargs)

    def configure_optimizers(self) -> Any:
        """Optimizer over :meth:`param_groups` and a scheduler stepped every optimizer step."""
        groups = self.param_groups()
        if self.optimizer_factory is not None:
            optimizer = self.optimizer_factory(groups)
        else:
            optimizer = torch.optim.AdamW(groups, lr=1e-3, weight_decay=0.01, fused=_fused_adamw_ok(groups))
        if self.lr is not None:
            scale = self.lr / float(optimizer.defaults["lr"])
            for group in optimizer.param_groups:
                group["lr"] = float(group["lr"]) * scale
        if self.scheduler_factory is not None:
            scheduler = self.scheduler_factory(optimizer)
        else:
            total = self.trainer.estimated_stepping_batches
            total = 1000 if not math.isfinite(total) else int(total)
            scheduler = warmup_cosine(optimizer, total, int(total * self.warmup_ratio))
        if self._trainer is not None:
            self._built_for = (self.lr, self.trainer.num_training_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_model(self) -> None:
        """Compile the network in place when ``compile`` asks for it (once; see :mod:`trident_core.compile`)."""
        if self.compile_options is not None:
            for target in self.compile_targets():
                compile_in_place(target, self.compile_options)

    def compile_targets(self) -> list[nn.Module]:
        """The modules ``compile`` compiles: ``[self.net]``. A domain whose steps call other methods of the net than
        ``forward`` (``torch.compile`` of a module compiles its ``__call__``) returns the submodules they call."""
        return [self.net]

    def on_fit_start(self) -> None:
        """Rebuild the optimizer and schedule when a tuner changed what they were built for: Lightning's
        ``LearningRateFinder`` (a new ``lr``; it only patches the groups' lr, which the schedule's base lr then
        overwrites) and ``BatchSizeFinder`` (another number of steps for the schedule). Subclasses call ``super()``."""
        if self._built_for is None or self._built_for == (self.lr, self.trainer.num_training_batches):
            return
        log.info("rebuilding the optimizer and LR schedule for lr=%s and %s batches per epoch (set by a tuner)",
                 self.lr, self.trainer.num_training_batches)
        self.trainer.strategy.setup_optimizers(self.trainer)

    def param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups for the optimizer; override for layer-wise or head/encoder learning rates."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None
    ) -> None:
        """Lightning's clipping, except that ``bf16-mixed`` also clips for a fused optimizer. bf16 has no loss
        scaler, so the gradients are never scaled; Lightning's ``MixedPrecision`` refuses every optimizer that
        unscales internally all the same, a check meant for fp16 (Lightning issue #21435)."""
        plugin = self.trainer.precision_plugin
        if gradient_clip_val and isinstance(plugin, MixedPrecision) and plugin.scaler is None:
            algorithm = GradClipAlgorithmType(gradient_clip_algorithm or GradClipAlgorithmType.NORM)
            Precision.clip_gradients(plugin, optimizer, gradient_clip_val, algorithm)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def set_metrics(self, metrics: MetricCollection) -> None:
        """Register per-stage clones of ``metrics`` named ``train/...``, ``val/...`` and ``test/...``."""
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        """Skip a training batch of one sample when the network has BatchNorm (its statistics need two or more;
        PyTorch raises on one). Such a batch is the remainder at the end of an epoch, so Lightning's ``-1``
        ("skip the rest of this epoch") skips exactly it; under DDP every rank skips when any rank has one.
        Subclasses that override this call ``super()``."""
        if batch_idx == 0 or self._batchnorms is None:  # walk the modules once per epoch, not every step
            self._batchnorms = [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not any(m.training for m in self._batchnorms):
            return None
        try:
            one_sample = extract_batch_size(batch) == 1
        except Exception:  # batches without tensors: nothing to judge
            one_sample = False
        if self._trainer is not None and self.trainer.world_size > 1:
            # Every rank must skip together: a rank that skips alone leaves the others waiting in the gradient
            # all-reduce (samplers that batch by length or duration can give one rank the remainder of one).
            one_sample = self.trainer.strategy.reduce_boolean_decision(one_sample, all=False)
        if not one_sample:
            return None
        log.warning(
            "skipping a training batch of 1 sample at step %d (batch %d): BatchNorm cannot train on one sample; "
            "set data.batch_size so the dataset does not leave a remainder of 1",
            self.trainer.global_step if self._trainer is not None else -1, batch_idx,
        )
        return -1

    def export_spec(self) -> ExportSpec:
        """What to export and how to check it; every domain implements this."""
        raise NotImplementedError(f"{type(self).__name__} does not implement export_spec()")

    def checkpoint_extras(self) -> dict[str, Any]:
        """Plain-data values (str, numbers, lists, dicts) the domain keeps in checkpoints beside the weights, such
        as a tokenizer; stored under ``checkpoint["trident"]["extras"]``. Override with
        :meth:`restore_checkpoint_extras`."""
        return {}

    def restore_checkpoint_extras(self, extras: dict[str, Any]) -> None:
        """Take back what :meth:`checkpoint_extras` stored (``{}`` for a checkpoint that stored nothing)."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the W&B run id, the latest metrics and the domain's extras under the one ``trident`` key, so
        resumes continue the W&B run and exports know the metrics."""
        extra: dict[str, Any] = {"version": CHECKPOINT_VERSION, "wandb_run_id": None, "metrics": {}}
        if self._trainer is not None:
            for logger in self.trainer.loggers:
                if isinstance(logger, WandbLogger):
                    extra["wandb_run_id"] = logger.version
            extra["metrics"] = {
                k: float(v) for k, v in self.trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1
            }
        extra["extras"] = self.checkpoint_extras()
        checkpoint["trident"] = extra

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse checkpoints of another checkpoint version (naming it); restore the domain's extras."""
        check_checkpoint_version(checkpoint)
        self.restore_checkpoint_extras(checkpoint["trident"].get("extras") or {})


def check_checkpoint_version(checkpoint: dict[str, Any], source: str = "this checkpoint") -> None:
    """Raise :class:`CheckpointError` naming the version unless ``checkpoint`` has :data:`CHECKPOINT_VERSION`
    (checkpoints written before the version was recorded are version 1)."""
    found = (checkpoint.get("trident") or {}).get("version", 1)
    if found != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{source}: Trident checkpoint version {found}; this Trident reads version {CHECKPOINT_VERSION} (since "
            "trident-core 0.2 one 'trident' key holds the domain's extras and nlp modules receive `net`). Retrain "
            "with this version, or export the checkpoint with the Trident that wrote it"
        )


def _fused_adamw_ok(groups: list[dict[str, Any]]) -> bool:
    """Whether PyTorch's fused AdamW kernel can take these parameters (floating point, on CPU or CUDA): one kernel
    per step instead of a loop over tensors, ~5x faster on CPU for a 22M-parameter encoder (benchmarks P2)."""
    params = [p for group in groups for p in group["params"]]
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
