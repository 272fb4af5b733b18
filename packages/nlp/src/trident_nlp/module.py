"""``IntentModule``: cross-entropy training, CLINC-style out-of-scope evaluation, the export spec."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from trident_core.errors import ConfigError
from trident_core.export import ExportSpec
from trident_core.module import LRSchedulerCallable, OptimizerCallable, TaskModule
from trident_nlp.defaults import OOS_LABEL
from trident_nlp.model import build_classifier
from trident_nlp.oos import choose_threshold, oos_metrics, scores_from_logits
from trident_nlp.text import SCRATCH, TextEncoder

_NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias", "layer_norm")
_EXPORT_TEXTS = ["where is my order", "i forgot my password and cannot log in to my account today", "hi"]


class IntentModule(TaskModule):
    """Fine-tunes a transformer encoder for intent classification with out-of-scope detection.

    A confidence threshold on ``score`` (``max_prob``: the largest softmax probability; ``energy``: the
    log-sum-exp of the logits) is chosen on validation after every validation epoch, stored in the
    checkpoint and the artifact, and applied at test and inference time: below it, a query is out of scope.

    Args:
        labels: Intent names, index order (linked from ``data.labels``).
        backbone: Resolved backbone: ``scratch``, ``all-minilm-l6-v2``, a local folder or a hub id
            (linked from ``data.backbone``).
        vocab_size: Tokenizer vocabulary size (linked from ``data.vocab_size``).
        oos_label: Label of out-of-scope queries (linked from ``data.oos_label``).
        max_length: Truncation length in tokens (linked from ``data.max_length``).
        hidden_size: Width of a scratch encoder.
        num_layers: Layers of a scratch encoder.
        num_heads: Attention heads of a scratch encoder.
        dropout: Dropout before the classification head.
        label_smoothing: Cross-entropy label smoothing.
        encoder_lr: Peak learning rate of the encoder's top layer; ``None``: 5e-5 for a pretrained backbone,
            the optimizer's learning rate for a scratch one.
        head_lr: Learning rate of the head; ``None``: the optimizer's learning rate.
        layer_decay: Layer-wise learning-rate decay: layer ``k`` below the top gets ``encoder_lr * decay**k``.
        freeze_word_embeddings: Keep a pretrained encoder's word-embedding matrix as it is (ignored for a scratch
            encoder, whose embeddings must learn). On MiniLM it is half the parameters: skipping its gradient and
            optimizer update makes a CPU step ~10% cheaper, and words unseen in training keep their neighbours.
        score: ``max_prob`` or ``energy``.
        tokenizer_json: The serialised tokenizer; taken from the datamodule at fit time when ``None`` and
            kept in the checkpoint (not in the hyperparameters).
        optimizer: Optimizer factory (default AdamW(lr=1e-3, weight_decay=0.01)).
        scheduler: LR scheduler factory (default warmup + cosine).
        warmup_ratio: Warmup fraction of the training steps.
    """

    def __init__(
        self,
        labels: list[str] | None = None,
        backbone: str = SCRATCH,
        vocab_size: int = 8000,
        oos_label: str = OOS_LABEL,
        max_length: int = 64,
        hidden_size: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        dropout: float = 0.1,
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
        if score not in ("max_prob", "energy"):
            raise ConfigError(f"model.score must be 'max_prob' or 'energy', got {score!r}")
        net = build_classifier(
            backbone,
            len(labels),
            vocab_size,
            hidden_size,
            num_layers,
            num_heads,
            max(512, max_length),
            dropout,
        )
        if freeze_word_embeddings and backbone != SCRATCH:
            net.encoder.get_input_embeddings().weight.requires_grad_(False)
        super().__init__(net, optimizer=optimizer, scheduler=scheduler, warmup_ratio=warmup_ratio)
        self.save_hyperparameters(ignore=["tokenizer_json", "optimizer", "scheduler"])
        self.labels = labels
        self.backbone = backbone
        self.oos_label = oos_label
        self.oos_index = labels.index(oos_label) if oos_label in labels else None
        self.max_length = max_length
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
        self._outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

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

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> list[dict[str, Any]]:
        logits = self.net(batch["input_ids"], batch["attention_mask"])
        probs = logits.float().softmax(-1)
        scores = scores_from_logits(logits.float().cpu().numpy(), self.score)
        rows = []
        for p, s in zip(probs.tolist(), scores.tolist(), strict=True):
            index = max(range(len(p)), key=p.__getitem__)
            in_scope = index != self.oos_index and s >= float(self.oos_threshold)
            rows.append(
                {
                    "intent": self.labels[index] if in_scope else self.oos_label,
                    "confidence": p[index],
                    "in_scope": in_scope,
                }
            )
        return rows

    def on_predict_epoch_end(self) -> None:
        """Write ``<default_root_dir>/predictions.jsonl`` with the texts of ``data.predict_file``."""
        rows = [row for batch in self.trainer.predict_loop.predictions for row in batch]
        texts = getattr(self.trainer.datamodule, "predict_texts", None) or [None] * len(rows)
        if self.trainer.world_size > 1 or len(texts) != len(rows):
            return
        path = Path(self.trainer.default_root_dir) / "predictions.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            for text, row in zip(texts, rows, strict=True):
                fh.write(json.dumps({"text": text, **row}, ensure_ascii=False) + "\n")
        rank_zero_info(f"predictions written to {path}")

    # -- evaluation -----------------------------------------------------------------------------------
    def _eval_step(self, batch: dict[str, torch.Tensor], metrics: MetricCollection | None, stage: str) -> None:
        logits = self.net(batch["input_ids"], batch["attention_mask"]).float()
        size = len(batch["labels"])
        self.log(f"{stage}/loss", F.cross_entropy(logits, batch["labels"]), batch_size=size, sync_dist=True)
        assert metrics is not None
        metrics.update(logits, batch["labels"])
        self._outputs.append(
            (
                logits.logsumexp(-1) if self.score == "energy" else logits.softmax(-1).amax(-1),
                logits.argmax(-1),
                batch["labels"],
            )
        )

    def _gathered(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self._outputs:
            empty = torch.zeros(0, device=self.device)
            return empty, empty.long(), empty.long()
        parts = [torch.cat(column) for column in zip(*self._outputs, strict=True)]
        self._outputs.clear()
        if self.trainer.world_size > 1:
            parts = [self.all_gather(p).reshape(-1) for p in parts]
        return parts[0].cpu(), parts[1].cpu(), parts[2].cpu()

    def on_validation_epoch_start(self) -> None:
        self._outputs.clear()

    def on_validation_epoch_end(self) -> None:
        assert self.val_metrics is not None
        self.log_dict(self.val_metrics.compute(), prog_bar=True, sync_dist=True)
        self.val_metrics.reset()
        scores, preds, targets = self._gathered()
        if self.oos_index is None or self.trainer.sanity_checking or len(targets) == 0:
            return
        threshold = choose_threshold(scores.numpy(), preds.numpy(), targets.numpy(), self.oos_index)
        self.oos_threshold.fill_(threshold)
        report = oos_metrics(scores.numpy(), preds.numpy(), targets.numpy(), self.oos_index, threshold)
        self.log("val/in_scope_acc", report["in_scope_acc"])
        self.log("val/oos_recall", report["oos_recall"])
        self.log("val/threshold", threshold if math.isfinite(threshold) else 0.0)

    def on_test_epoch_start(self) -> None:
        self._outputs.clear()

    def on_test_epoch_end(self) -> None:
        assert self.test_metrics is not None
        self.log_dict(self.test_metrics.compute(), sync_dist=True)
        self.test_metrics.reset()
        scores, preds, targets = self._gathered()
        if self.oos_index is not None and len(targets):
            report = oos_metrics(
                scores.numpy(), preds.numpy(), targets.numpy(), self.oos_index, float(self.oos_threshold)
            )
            self.log("test/in_scope_acc", report["in_scope_acc"])
            self.log("test/oos_recall", report["oos_recall"])
        if self.trainer.is_global_zero and len(targets):
            from trident_nlp.report import write_test_report

            folder = Path(self.trainer.default_root_dir)
            text, image = write_test_report(preds.numpy(), targets.numpy(), self.labels, folder)
            rank_zero_info(text)
            for logger in self.trainer.loggers:
                if isinstance(logger, WandbLogger) and image is not None:
                    logger.log_image(key="test/confusion_matrix", images=[str(image)])

    # -- optimisation ---------------------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """Head vs encoder learning rates, layer-wise decay inside the encoder, no decay on bias/LayerNorm."""
        pretrained = self.backbone != SCRATCH
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
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.tokenizer_json is None and datamodule is not None:
            self.tokenizer_json = getattr(datamodule, "tokenizer_json", None)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["trident_nlp"] = {"tokenizer_json": self.tokenizer_json}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        extra = checkpoint.get("trident_nlp") or {}
        if extra.get("tokenizer_json"):
            self.tokenizer_json = extra["tokenizer_json"]

    def export_spec(self) -> ExportSpec:
        """ONNX with dynamic batch and sequence; the artifact carries tokenizer, labels and threshold."""
        if self.tokenizer_json is None:
            raise ConfigError("this IntentModule has no tokenizer; train it with an IntentDataModule first")
        encoder = TextEncoder(self.tokenizer_json, self.max_length)
        examples = []
        for texts in (_EXPORT_TEXTS[:2], _EXPORT_TEXTS):
            ids, mask = encoder.pad(encoder.encode(texts))
            examples.append((torch.tensor(ids), torch.tensor(mask)))
        threshold = float(self.oos_threshold)
        net = self.net.float().cpu().eval()
        return ExportSpec(
            model=net,
            example_inputs=examples,
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "logits": {0: "batch"},
            },
            metadata={
                "task": "intent_classification",
                "labels": self.labels,
                "oos_label": self.oos_label,
                "has_oos_class": self.oos_index is not None,
                "score": self.score,
                "threshold": threshold if math.isfinite(threshold) else None,
                "max_length": self.max_length,
                "pad_id": encoder.pad_id,
                "tokenizer": "tokenizer.json",
                "backbone": self.backbone,
            },
            files={"tokenizer.json": self.tokenizer_json.encode("utf-8")},
            atol=1e-4,
        )


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
