"""``IntentModule``: cross-entropy training, CLINC-style out-of-scope evaluation, the export spec."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from trident_core.errors import ConfigError
from trident_core.export import ExportSpec
from trident_core.module import LRSchedulerCallable, OptimizerCallable, TaskModule
from trident_core.output import write_jsonl
from trident_nlp.defaults import OOS_LABEL
from trident_nlp.export import export_spec, prediction_rows
from trident_nlp.oos import SCORES, Decisions, choose_threshold, decide, oos_metrics
from trident_nlp.text import SCRATCH

_NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias", "layer_norm")


class IntentModule(TaskModule):
    """Fine-tunes a transformer encoder for intent classification with out-of-scope detection.

    A confidence threshold on ``score`` (``max_prob``: the largest softmax probability; ``energy``: the
    log-sum-exp of the logits) is chosen on validation after every validation epoch, stored in the
    checkpoint and the artifact, and applied at test and inference time by :func:`trident_nlp.oos.decide`:
    below it, a query is out of scope.

    Args:
        net: The classifier, :class:`trident_nlp.model.IntentClassifier` (or a module with its ``encoder``,
            ``head``, ``num_labels``, ``backbone`` and ``max_length``); its data-given arguments are linked from
            the data under the CLI.
        labels: Intent names, index order (linked from ``data.labels``).
        oos_label: Label of out-of-scope queries (linked from ``data.oos_label``).
        label_smoothing: Cross-entropy label smoothing.
        encoder_lr: Peak learning rate of the encoder's top layer; ``None``: 5e-5 for a pretrained backbone,
            the optimizer's learning rate for a scratch one.
        head_lr: Learning rate of the head; ``None``: the optimizer's learning rate.
        layer_decay: Layer-wise learning-rate decay: layer ``k`` below the top gets ``encoder_lr * decay**k``.
        freeze_word_embeddings: Keep a pretrained encoder's word-embedding matrix as it is (ignored for a scratch
            encoder, whose embeddings must learn). On MiniLM it is half the parameters: skipping its gradient and
            optimizer update makes a CPU step ~10% cheaper, and words unseen in training keep their neighbours.
        score: ``max_prob`` or ``energy``.
        tokenizer_json: The serialised tokenizer (linked from ``data.tokenizer_json``); kept in the checkpoint
            beside the weights (:meth:`checkpoint_extras`), not in the hyperparameters.
        optimizer: Optimizer factory (default AdamW(lr=1e-3, weight_decay=0.01)).
        scheduler: LR scheduler factory (default warmup + cosine).
        warmup_ratio: Warmup fraction of the training steps.
    """

    def __init__(
        self,
        net: nn.Module,
        labels: list[str] | None = None,
        oos_label: str = OOS_LABEL,
        label_smoothing: float = 0.0,
        encoder_lr: float | None = None,
        head_lr: float | None = None,
        layer_decay: float = 1.0,
        freeze_word_embeddings: bool = False,
        score: str = "max_prob",
        tokenizer_json: str | None = None,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        warmup_ratio: float = 0.06,
    ) -> None:
        labels = list(labels) if labels is not None else []
        if len(labels) < 2:
            raise ConfigError(f"model.labels needs at least 2 labels (linked from the data), got {labels}")
        if score not in SCORES:
            raise ConfigError(f"model.score must be one of {list(SCORES)}, got {score!r}")
        missing = [a for a in ("encoder", "head", "num_labels", "backbone", "max_length") if not hasattr(net, a)]
        if missing:
            raise ConfigError(f"model.net lacks {missing}; use trident_nlp.model.IntentClassifier")
        if net.num_labels != len(labels):
            raise ConfigError(f"model.net has {net.num_labels} outputs but there are {len(labels)} labels; set "
                              "model.net.init_args.num_labels or let the CLI link it from the data")
        super().__init__(net, optimizer=optimizer, scheduler=scheduler, warmup_ratio=warmup_ratio)
        # the tokenizer is data, not a hyperparameter: it travels in the checkpoint extras
        self.save_hyperparameters(ignore=["net", "tokenizer_json", "optimizer", "scheduler"])
        if freeze_word_embeddings and net.backbone != SCRATCH:
            net.encoder.get_input_embeddings().weight.requires_grad_(False)
        self.labels = labels
        self.oos_label = oos_label
        self.oos_index = labels.index(oos_label) if oos_label in labels else None
        self.label_smoothing = label_smoothing
        self.encoder_lr = encoder_lr
        self.head_lr = head_lr
        self.layer_decay = layer_decay
        self.score = score
        self.tokenizer_json = tokenizer_json
        self.register_buffer("oos_threshold", torch.tensor(float("-inf")))
        # training accuracy as two running sums (correct, seen): a torchmetrics update plus a log call per step
        # cost ~1.5 ms on the tiny model, a quarter of its step (benchmarks P1); the epoch value is the same
        self.register_buffer("_train_hits", torch.zeros(2), persistent=False)
        n = len(labels)
        self.set_metrics(
            MetricCollection(
                {
                    "acc": MulticlassAccuracy(n, average="micro"),
                    "macro_f1": MulticlassF1Score(n, average="macro"),
                }
            )
        )
        self._outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, num_labels)``."""
        return self.net(input_ids, attention_mask)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.net(batch["input_ids"], batch["attention_mask"])
        loss = F.cross_entropy(logits, batch["labels"], label_smoothing=self.label_smoothing)
        size = len(batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        with torch.no_grad():
            self._train_hits[0] += (logits.argmax(-1) == batch["labels"]).sum()
            self._train_hits[1] += size
        return loss

    def on_train_epoch_start(self) -> None:
        self._train_hits.zero_()

    def on_train_epoch_end(self) -> None:
        """``train/acc`` of the epoch over all ranks (since the resume point, after a mid-epoch resume)."""
        correct, seen = self.trainer.strategy.reduce(self._train_hits.clone(), reduce_op="sum").tolist()
        if seen:
            self.log("train/acc", correct / seen, sync_dist=False, rank_zero_only=False)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        logits = self.net(batch["input_ids"], batch["attention_mask"])
        rows = prediction_rows(self.decide(logits), self.labels, self.oos_label)
        texts = batch.get("text") or [None] * len(rows)
        return [{"text": text, **row} for text, row in zip(texts, rows, strict=True)]

    def on_predict_epoch_end(self) -> None:
        """Write ``<default_root_dir>/predictions.jsonl`` (texts of ``data.predict_file`` with their rows)."""
        if self.trainer.world_size > 1:  # each rank holds only its shard of the rows
            return
        rows = [row for batch in self.trainer.predict_loop.predictions for row in batch]
        path = write_jsonl(rows, Path(self.trainer.default_root_dir) / "predictions.jsonl", "predictions.jsonl")
        rank_zero_info(f"predictions written to {path}")

    # -- evaluation -----------------------------------------------------------------------------------
    @property
    def threshold(self) -> float | None:
        """The validation-chosen threshold; ``None`` while it rejects nothing (``-inf``)."""
        value = float(self.oos_threshold)
        return value if math.isfinite(value) else None

    def decide(self, logits: torch.Tensor) -> Decisions:
        """In-scope decisions of ``logits`` by :func:`trident_nlp.oos.decide` (numpy), the rule the artifact
        applies too."""
        return decide(logits.detach().float().cpu().numpy(), self.score, self.oos_index, self.threshold)

    def _eval_step(self, batch: dict[str, torch.Tensor], metrics: MetricCollection | None, stage: str) -> None:
        logits = self.net(batch["input_ids"], batch["attention_mask"]).float()
        size = len(batch["labels"])
        self.log(f"{stage}/loss", F.cross_entropy(logits, batch["labels"]), batch_size=size, sync_dist=True)
        assert metrics is not None
        metrics.update(logits, batch["labels"])
        self._outputs.append((logits.detach(), batch["labels"]))

    def _gathered(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The epoch's logits ``(rows, classes)`` and targets from every rank, on the CPU."""
        if not self._outputs:
            return torch.zeros(0, len(self.labels)), torch.zeros(0, dtype=torch.long)
        logits, targets = (torch.cat(column) for column in zip(*self._outputs, strict=True))
        self._outputs.clear()
        if self.trainer.world_size > 1:
            logits = self.all_gather(logits).reshape(-1, logits.shape[-1])
            targets = self.all_gather(targets).reshape(-1)
        return logits.cpu(), targets.cpu()

    def on_validation_epoch_start(self) -> None:
        self._outputs.clear()

    def on_validation_epoch_end(self) -> None:
        assert self.val_metrics is not None
        self.log_dict(self.val_metrics.compute(), prog_bar=True, sync_dist=True)
        self.val_metrics.reset()
        logits, targets = self._gathered()
        if self.oos_index is None or self.trainer.sanity_checking or len(targets) == 0:
            return
        raw = decide(logits.numpy(), self.score, self.oos_index, None)  # scores before any threshold
        threshold = choose_threshold(raw.score, raw.argmax, targets.numpy(), self.oos_index)
        self.oos_threshold.fill_(threshold)
        report = oos_metrics(self.decide(logits).index, targets.numpy(), self.oos_index)
        self.log("val/in_scope_acc", report["in_scope_acc"])
        self.log("val/oos_recall", report["oos_recall"])
        self.log("val/threshold", threshold if math.isfinite(threshold) else 0.0)

    def on_test_epoch_start(self) -> None:
        self._outputs.clear()

    def on_test_epoch_end(self) -> None:
        assert self.test_metrics is not None
        self.log_dict(self.test_metrics.compute(), sync_dist=True)
        self.test_metrics.reset()
        logits, targets = self._gathered()
        decisions = self.decide(logits)
        if self.oos_index is not None and len(targets):
            report = oos_metrics(decisions.index, targets.numpy(), self.oos_index)
            self.log("test/in_scope_acc", report["in_scope_acc"])
            self.log("test/oos_recall", report["oos_recall"])
        if self.trainer.is_global_zero and len(targets):
            from trident_nlp.report import write_test_report

            folder = Path(self.trainer.default_root_dir)
            text, image = write_test_report(decisions.argmax, targets.numpy(), self.labels, folder)
            rank_zero_info(text)
            for logger in self.trainer.loggers:
                if isinstance(logger, WandbLogger) and image is not None:
                    logger.log_image(key="test/confusion_matrix", images=[str(image)])

    # -- optimisation ---------------------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """Head vs encoder learning rates, layer-wise decay inside the encoder, no decay on bias/LayerNorm."""
        pretrained = self.net.backbone != SCRATCH
        encoder_lr = self.encoder_lr if self.encoder_lr is not None else (5e-5 if pretrained else None)
        depth_of = _layer_depths(self.net.encoder)
        top = max(depth_of.values(), default=0)
        groups: dict[tuple[Any, bool], dict[str, Any]] = {}
        for name, param in self.net.named_parameters():
            if not param.requires_grad:
                continue
            if name.startswith("encoder."):
                depth = depth_of.get(name.removeprefix("encoder."), top)
                lr = None if encoder_lr is None else encoder_lr * self.layer_decay ** (top - depth)
            else:
                lr = self.head_lr
            no_decay = any(key in name for key in _NO_DECAY)
            group = groups.setdefault((lr, no_decay), {"params": []})
            group["params"].append(param)
            if lr is not None:
                group["lr"] = lr
            if no_decay:
                group["weight_decay"] = 0.0
        return list(groups.values())

    # -- checkpoint and export ------------------------------------------------------------------------
    def checkpoint_extras(self) -> dict[str, Any]:
        """The tokenizer rides in the checkpoint beside the weights (it is data, megabytes for a pretrained one)."""
        return {"tokenizer_json": self.tokenizer_json}

    def restore_checkpoint_extras(self, extras: dict[str, Any]) -> None:
        if extras.get("tokenizer_json"):
            self.tokenizer_json = extras["tokenizer_json"]

    def export_spec(self) -> ExportSpec:
        """See :func:`trident_nlp.export.export_spec`."""
        return export_spec(self)


def _layer_depths(encoder: torch.nn.Module) -> dict[str, int]:
    """Depth of every encoder parameter: embeddings 0, transformer layer ``i`` at ``i + 1``."""
    depths = {}
    for name, _ in encoder.named_parameters():
        parts = name.split(".")
        if "embeddings" in parts:
            depths[name] = 0
        elif "layer" in parts and parts[parts.index("layer") + 1].isdigit():
            depths[name] = int(parts[parts.index("layer") + 1]) + 1
    return depths
