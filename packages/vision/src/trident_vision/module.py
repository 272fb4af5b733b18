"""``SegmentationModule``: DiceCE training, sliding-window evaluation, Dice and HD95 with MONAI."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from lightning.pytorch.loggers import WandbLogger
from torch import nn
from torchmetrics import Metric

from trident_core.errors import ConfigError
from trident_core.module import LRSchedulerCallable, OptimizerCallable, TaskModule
from trident_vision.export import PostProcessing, export_spec, flip_averaged, postprocess_options, segmentation_mask
from trident_vision.model import net_divisor, out_channels
from trident_vision.overlay import overlay_png, wandb_overlays
from trident_vision.transforms import make_preprocessing

if TYPE_CHECKING:
    import numpy as np

    from trident_core.export import ExportSpec

BLEND_MODES = ("gaussian", "constant")


class ClassMean(Metric):
    """Per-class mean of per-case values, skipping NaN/inf (empty classes); summed across DDP ranks."""

    full_state_update = False
    total: torch.Tensor  # states registered by add_state (typed for mypy, which sees `Tensor | Module`)
    count: torch.Tensor

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.add_state("total", default=torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, values: torch.Tensor) -> None:
        values = values.detach().to(torch.float64).reshape(-1, self.total.numel())
        valid = torch.isfinite(values)
        self.total += torch.where(valid, values, torch.zeros_like(values)).sum(0)
        self.count += valid.sum(0)

    def compute(self) -> torch.Tensor:
        return self.total / self.count  # NaN for classes never seen


class SegmentationModule(TaskModule):
    """Trains a 3D segmentation network with Dice+CE loss and sliding-window evaluation.

    Args:
        net: A MONAI 3D network (``UNet`` by default) with ``num_classes`` output channels.
        num_classes: Classes including background (linked from the data).
        class_names: One name per class (linked from the data); used in metric names and the artifact.
        label_values: The label value of each class in the files (linked from the data; ``[0, 1, 4]`` for
            non-contiguous labels): training sees class indices, the artifact writes these values back.
        in_channels: Image channels (linked from the data).
        preprocessing: Spacing, orientation, intensity parameters (linked from the data; kept for export).
        roi_size: Sliding-window size (linked from the data's patch size); a multiple of the network stride.
        sw_batch_size: Windows per forward pass in sliding-window inference (stored in the artifact: also `infer`'s
            default windows per onnxruntime call).
        overlap: Fraction of overlap between windows.
        blend_mode: ``gaussian`` or ``constant`` weighting of overlapping windows.
        lambda_dice: Weight of the Dice term.
        lambda_ce: Weight of the cross-entropy term.
        postprocess: Mask post-processing (:class:`~trident_vision.export.PostProcessing`: ``largest_component``,
            ``fill_holes``, ``tta_flips``), applied by validation, test, predict and, from the artifact, ``infer``.
        overlays: At each validation end and at test end, save a PNG of an overlay slice and log a few slices to
            W&B as ``wandb.Image`` with ground-truth and prediction masks.
        channels_last: Keep the network's weights and the training volumes in channels-last order (NDHWC), which
            the 3D convolutions of oneDNN (CPU) and cuDNN prefer: the same operations, a faster step (a UNet step
            on the 2-core CPU: about 1.2x; see the README's benchmark notes).
        optimizer: Optimizer factory (default AdamW).
        scheduler: LR scheduler factory (default warmup + cosine).
        warmup_ratio: Warmup share of the default scheduler.
        lr: Base learning rate over the optimizer's (see :class:`~trident_core.module.TaskModule`).
        compile: ``torch.compile`` the network (``true`` or a dict of options; see ``TaskModule``).
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int = 3,
        class_names: list[str] | None = None,
        label_values: list[int] | None = None,
        in_channels: int = 1,
        preprocessing: dict[str, Any] | None = None,
        roi_size: tuple[int, int, int] = (48, 48, 48),
        sw_batch_size: int = 4,
        overlap: float = 0.25,
        blend_mode: str = "gaussian",
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        postprocess: PostProcessing | None = None,
        overlays: bool = True,
        channels_last: bool = True,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        warmup_ratio: float = 0.06,
        lr: float | None = None,
        compile: bool | dict[str, Any] = False,
    ) -> None:
        super().__init__(net, optimizer=optimizer, scheduler=scheduler, warmup_ratio=warmup_ratio, lr=lr,
                         compile=compile)
        from monai.losses import DiceCELoss

        if num_classes < 2:
            raise ConfigError(f"model.num_classes must be >= 2 (background + classes), got {num_classes}")
        produced = out_channels(net)
        if produced is not None and produced != num_classes:
            raise ConfigError(f"model.net has {produced} output channels but the data has {num_classes} classes; "
                              "set model.net.init_args.out_channels or let the CLI link it")
        self.divisor = net_divisor(net)
        bad = [r for r in roi_size if r % self.divisor]
        if len(roi_size) != 3 or bad:
            raise ConfigError(f"roi_size {list(roi_size)} (data.roi_size) must be three multiples of "
                              f"{self.divisor}, the total stride of {type(net).__name__}; e.g. "
                              f"{[max(self.divisor, r // self.divisor * self.divisor) for r in roi_size]}")
        if blend_mode not in BLEND_MODES:
            raise ConfigError(f"model.blend_mode must be one of {BLEND_MODES}, got {blend_mode!r}")
        if not 0 <= overlap < 1:
            raise ConfigError(f"model.overlap must be in [0, 1), got {overlap}")
        self.num_classes = num_classes
        self.class_names = list(class_names or [f"class_{i}" for i in range(num_classes)])
        if len(self.class_names) != num_classes:
            raise ConfigError(f"model.class_names has {len(self.class_names)} names for {num_classes} classes")
        self.label_values = [int(v) for v in label_values] if label_values else list(range(num_classes))
        if len(self.label_values) != num_classes:
            raise ConfigError(f"model.label_values has {len(self.label_values)} values for {num_classes} classes")
        self.in_channels = in_channels
        self.preprocessing = preprocessing or make_preprocessing()
        self.roi_size = [int(r) for r in roi_size]
        self.sw_batch_size, self.overlap, self.blend_mode = sw_batch_size, overlap, blend_mode
        self.postprocess = postprocess_options(postprocess)
        self.overlays = overlays
        self.channels_last = channels_last
        if channels_last:
            # 5-D weights only; moves to a device keep it (nn.Module.to's stub omits memory_format)
            self.net.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=lambda_dice, lambda_ce=lambda_ce)
        self.val_dice = ClassMean(num_classes - 1)
        self.test_dice = ClassMean(num_classes - 1)
        self.test_hd95 = ClassMean(num_classes - 1)
        self._overlay_case: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch["image"], batch["label"]
        # a plain tensor for the net: MONAI's MetaTensor dispatch fails under torch.compile (--model.compile true)
        images = images.as_tensor() if hasattr(images, "as_tensor") else images
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last_3d)
        loss = self.loss(self.net(images), labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=images.shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Class-index masks on the preprocessed grid (``infer`` maps them back to the input grid)."""
        images = batch["image"]
        return segmentation_mask(self.class_scores(images, self.sliding_window(images)), self.postprocess)

    def class_scores(self, images: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """What the mask is made from: the logits, or with ``tta_flips`` probabilities averaged over flips."""
        if self.postprocess["tta_flips"]:
            plain = images.as_tensor() if hasattr(images, "as_tensor") else images  # flips need no metadata
            return flip_averaged(self.sliding_window, plain, logits)
        return logits

    def sliding_window(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of whole volumes by sliding-window inference (volumes smaller than the ROI are padded)."""
        from monai.inferers import sliding_window_inference

        logits = sliding_window_inference(images.as_tensor() if hasattr(images, "as_tensor") else images,
                                          self.roi_size, self.sw_batch_size, self.net, overlap=self.overlap,
                                          mode=self.blend_mode)
        return cast(torch.Tensor, logits)  # a tensor in, a tensor out (typed for dict/tuple outputs too)

    def _evaluate(self, batch: dict[str, torch.Tensor], batch_idx: int, stage: str) -> None:
        from monai.metrics import compute_dice, compute_hausdorff_distance

        images, labels = batch["image"], batch["label"]
        labels = labels.as_tensor() if hasattr(labels, "as_tensor") else labels
        logits = self.sliding_window(images)
        self.log(f"{stage}/loss", self.loss(logits, labels), sync_dist=True, batch_size=images.shape[0])
        # [B, 1, ...] class indices, as infer labels a volume
        pred = segmentation_mask(self.class_scores(images, logits), self.postprocess)[:, None]
        pred_1h = _one_hot(pred, self.num_classes)
        label_1h = _one_hot(labels.long(), self.num_classes)
        dice = compute_dice(pred_1h, label_1h, include_background=False, ignore_empty=True)
        (self.val_dice if stage == "val" else self.test_dice).update(dice)
        if stage == "test":
            hd = compute_hausdorff_distance(pred_1h, label_1h, include_background=False, percentile=95,
                                            spacing=self.preprocessing["spacing"])
            self.test_hd95.update(hd)
        if batch_idx == 0 and self.overlays:
            self._overlay_case = (images[0, 0].detach().cpu().numpy(), labels[0, 0].cpu().numpy(),
                                  pred[0, 0].cpu().numpy())

    def on_validation_epoch_end(self) -> None:
        self._log_classes("val", "dice", self.val_dice)
        self._save_overlay(f"val_epoch{self.current_epoch:03d}", "val/overlay")

    def on_test_epoch_end(self) -> None:
        self._log_classes("test", "dice", self.test_dice)
        self._log_classes("test", "hd95", self.test_hd95, missing=math.inf)
        self._save_overlay("test", "test/overlay")

    def _log_classes(self, stage: str, name: str, metric: ClassMean, missing: float = 0.0) -> None:
        # torchmetrics squeezes a one-element result to 0-d: with one foreground class that is every run
        per_class = metric.compute().float().reshape(-1)
        metric.reset()
        seen = per_class[torch.isfinite(per_class)]
        mean = seen.mean() if seen.numel() else torch.tensor(missing)
        self.log(f"{stage}/{name}", mean, sync_dist=True)
        for label, value in zip(self.class_names[1:], per_class, strict=True):
            self.log(f"{stage}/{name}_{label}", value if torch.isfinite(value) else torch.tensor(missing),
                     sync_dist=True)

    def _save_overlay(self, file_stem: str, key: str) -> None:
        case, self._overlay_case = self._overlay_case, None
        if case is None or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        overlay_png(*case, Path(self.trainer.default_root_dir) / "overlays" / f"{file_stem}.png")
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):  # a few slices, label and prediction as W&B masks
                # Logger.log_metrics types values as float; WandbLogger logs media as well
                logger.log_metrics({key: wandb_overlays(*case, self.class_names)},  # type: ignore[dict-item]
                                   step=self.global_step)

    def export_spec(self) -> ExportSpec:
        """The network and its :class:`~trident_vision.export.SegmentationMetadata` (see
        :func:`trident_vision.export.export_spec`)."""
        return export_spec(self)


def _one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[B, 1, ...]`` class indices -> ``[B, C, ...]`` one-hot (indices outside the classes stay all-zero)."""
    index = labels.long().clamp(0, num_classes - 1)
    return torch.zeros(labels.shape[0], num_classes, *labels.shape[2:], device=labels.device).scatter_(1, index, 1)
