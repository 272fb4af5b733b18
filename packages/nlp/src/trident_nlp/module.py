"""``IntentModule``: cross-entropy training, CLINC-style out-of-scope evaluation, the export spec."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from trident_core.errors import ConfigError
from trident_core.export import ExportSpec
from trident_core.module import LRSchedulerCallable, OptimizerCallable, TaskModule
from trident_core.output import write_jsonl
from trident_nlp import optim
from trident_nlp.defaults import OOS_LABEL
from trident_nlp.evaluation import log_detection, log_test_report
from trident_nlp.export import export_spec, prediction_rows
from trident_nlp.oos import (
    OPERATING_POINTS,
    SCORES,
    Decisions,
    OosStats,
    choose_threshold,
    decide,
    detection_metrics,
    oos_metrics,
)
from trident_nlp.text import SCRATCH

if TYPE_CHECKING:
    from trident_nlp.model import IntentClassifier


class IntentModule(TaskModule):
    """Fine-tunes a transformer encoder for intent classification with out-of-scope detection.

    A confidence threshold on ``score`` (``max_prob``: the largest softmax probability; ``energy``: the
    log-sum-exp of the logits; ``mahalanobis``: minus the squared Mahalanobis distance of the pooled embedding
    to the nearest in-scope class mean) is chosen on validation after every validation epoch at the
    ``operating_point``, stored in the checkpoint and the artifact, and applied at test and inference time by
    :func:`trident_nlp.oos.decide`: below it, a query is out of scope.

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
        score: ``max_prob``, ``energy`` or ``mahalanobis`` (class means and shared covariance of the pooled
            embeddings of the training epoch before each validation, kept in the checkpoint and the artifact).
        operating_point: How validation picks the threshold (:func:`trident_nlp.oos.choose_threshold`):
            ``balanced``, ``accuracy``, ``in_scope_accuracy`` (subject to ``min_oos_recall``) or ``oos_recall``
            (subject to ``min_in_scope_accuracy``).
        min_oos_recall: Constraint of ``operating_point: in_scope_accuracy``.
        min_in_scope_accuracy: Constraint of ``operating_point: oos_recall``.
        tokenizer_json: The serialised tokenizer (linked from ``data.tokenizer_json``); kept in the checkpoint
            beside the weights (:meth:`checkpoint_extras`), not in the hyperparameters.
        optimizer: Optimizer factory (default AdamW(lr=1e-3, weight_decay=0.01)).
        scheduler: LR scheduler factory (default warmup + cosine).
        warmup_ratio: Warmup fraction of the training steps.
        lr: Base learning rate over the optimizer's (see :class:`~trident_core.module.TaskModule`).
        compile: ``torch.compile`` the network (``true`` or a dict of options; see ``TaskModule``).
    """

    # for the type checker: nn.Module types unknown attributes as `Tensor | Module`; the net has
    # IntentClassifier's attributes (checked in __init__) and these are the buffers registered there
    net: IntentClassifier
    oos_threshold: torch.Tensor
    oos_means: torch.Tensor
    oos_precision: torch.Tensor
    _train_hits: torch.Tensor

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
        operating_point: str = "balanced",
        min_oos_recall: float = 0.85,
        min_in_scope_accuracy: float = 0.95,
        tokenizer_json: str | None = None,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        warmup_ratio: float = 0.06,
        lr: float | None = None,
        compile: bool | dict[str, Any] = False,
    ) -> None:
        labels = list(labels) if labels is not None else []
        if len(labels) < 2:
            raise ConfigError(f"model.labels needs at least 2 labels (linked from the data), got {labels}")
        if score not in SCORES:
            raise ConfigError(f"model.score must be one of {list(SCORES)}, got {score!r}")
        if operating_point not in OPERATING_POINTS:
            raise ConfigError(f"model.operating_point must be one of {list(OPERATING_POINTS)}, got "
                              f"{operating_point!r}")
        for key, value in (("min_oos_recall", min_oos_recall), ("min_in_scope_accuracy", min_in_scope_accuracy)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"model.{key} must be within [0, 1], got {value}")
        missing = [a for a in ("encoder", "head", "num_labels", "backbone", "max_length") if not hasattr(net, a)]
        if missing:
            raise ConfigError(f"model.net lacks {missing}; use trident_nlp.model.IntentClassifier")
        if net.num_labels != len(labels):
            raise ConfigError(f"model.net has {net.num_labels} outputs but there are {len(labels)} labels; set "
                              "model.net.init_args.num_labels or let the CLI link it from the data")
        super().__init__(net, optimizer=optimizer, scheduler=scheduler, warmup_ratio=warmup_ratio, lr=lr,
                         compile=compile)
        # the tokenizer is data, not a hyperparameter: it travels in the checkpoint extras
        self.save_hyperparameters(ignore=["net", "tokenizer_json", "optimizer", "scheduler"])
        if freeze_word_embeddings and net.backbone != SCRATCH:
            self.net.encoder.get_input_embeddings().weight.requires_grad_(False)
        self.labels = labels
        self.oos_label = oos_label
        self.oos_index = labels.index(oos_label) if oos_label in labels else None
        self.label_smoothing = label_smoothing
        self.encoder_lr = encoder_lr
        self.head_lr = head_lr
        self.layer_decay = layer_decay
        self.score = score
        self.operating_point = operating_point
        self.min_oos_recall = min_oos_recall
        self.min_in_scope_accuracy = min_in_scope_accuracy
        self.tokenizer_json = tokenizer_json
        self.register_buffer("oos_threshold", torch.tensor(float("-inf")))
        # the last validation's message when the operating point's constraint was out of reach ('' when met):
        # test and export refuse such a model instead of serving a rule the user did not ask for
        self.unmet_constraint = ""
        if score == "mahalanobis":
            width, classes = int(self.net.head.in_features), len(labels) - (oos_label in labels)
            self.register_buffer("oos_means", torch.zeros(classes, width, dtype=torch.float64))
            self.register_buffer("oos_precision", torch.zeros(width, width, dtype=torch.float64))
        self._train_embeddings: list[tuple[torch.Tensor, torch.Tensor]] = []
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
        logits, pooled = self.net.logits_and_embedding(batch["input_ids"], batch["attention_mask"])
        if self.score == "mahalanobis":
            # the epoch's own forward passes give the training embeddings for free (dropout on, weights moving;
            # a second pass over the training set would cost a third of an epoch)
            self._train_embeddings.append((pooled.detach().float().cpu(), batch["labels"].cpu()))
        loss = F.cross_entropy(logits, batch["labels"], label_smoothing=self.label_smoothing)
        size = len(batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        with torch.no_grad():
            self._train_hits[0] += (logits.argmax(-1) == batch["labels"]).sum()
            self._train_hits[1] += size
        return loss

    def on_train_epoch_start(self) -> None:
        self._train_hits.zero_()
        self._train_embeddings.clear()

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
        logits, pooled = self.net.logits_and_embedding(batch["input_ids"], batch["attention_mask"])
        rows = prediction_rows(self.decide(logits, pooled), self.labels, self.oos_label)
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

    @property
    def oos_stats(self) -> OosStats | None:
        """The training statistics of the ``mahalanobis`` score (``None`` for the logit scores)."""
        if self.score != "mahalanobis":
            return None
        return OosStats(self.oos_means.cpu().numpy(), self.oos_precision.cpu().numpy())

    def decide(self, logits: torch.Tensor, embeddings: torch.Tensor | None = None, threshold: Any = "stored"
               ) -> Decisions:
        """In-scope decisions of ``logits`` (and pooled ``embeddings``) by :func:`trident_nlp.oos.decide` (numpy),
        the rule the artifact applies too; ``threshold=None`` gives the raw scores before any threshold."""
        numpy = (None if embeddings is None else embeddings.detach().float().cpu().numpy())
        return decide(logits.detach().float().cpu().numpy(), self.score, self.oos_index,
                      self.threshold if threshold == "stored" else threshold, numpy, self.oos_stats)

    def _eval_step(self, batch: dict[str, torch.Tensor], metrics: MetricCollection | None, stage: str) -> None:
        logits, pooled = self.net.logits_and_embedding(batch["input_ids"], batch["attention_mask"])
        logits = logits.float()
        size = len(batch["labels"])
        self.log(f"{stage}/loss", F.cross_entropy(logits, batch["labels"]), batch_size=size, sync_dist=True)
        assert metrics is not None
        metrics.update(logits, batch["labels"])
        self._outputs.append((logits.detach(), pooled.detach().float(), batch["labels"]))

    def _gathered(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The epoch's logits ``(rows, classes)``, pooled embeddings and targets from every rank, on the CPU."""
        if not self._outputs:
            width = int(self.net.head.in_features)
            return torch.zeros(0, len(self.labels)), torch.zeros(0, width), torch.zeros(0, dtype=torch.long)
        logits, pooled, targets = (torch.cat(column) for column in zip(*self._outputs, strict=True))
        self._outputs.clear()
        if self.trainer.world_size > 1:
            logits = cast(torch.Tensor, self.all_gather(logits)).reshape(-1, logits.shape[-1])
            pooled = cast(torch.Tensor, self.all_gather(pooled)).reshape(-1, pooled.shape[-1])
            targets = cast(torch.Tensor, self.all_gather(targets)).reshape(-1)
        return logits.cpu(), pooled.cpu(), targets.cpu()

    def _fit_oos_stats(self) -> None:
        """Class means and shared covariance of the training epoch's pooled embeddings into the buffers."""
        if self.score != "mahalanobis" or not self._train_embeddings:
            return
        pooled, targets = (torch.cat(column) for column in zip(*self._train_embeddings, strict=True))
        stats = OosStats.fit(pooled.numpy(), targets.numpy(), self.oos_index)
        if stats.means.shape != tuple(self.oos_means.shape):
            raise ConfigError(f"model.score mahalanobis needs every in-scope intent in the training data; "
                              f"{len(stats.means)} of {len(self.oos_means)} were seen this epoch")
        self.oos_means.copy_(torch.from_numpy(stats.means))
        self.oos_precision.copy_(torch.from_numpy(stats.precision))

    def _choose_threshold(self, raw: Decisions, targets: torch.Tensor) -> float:
        """The operating point's threshold; an unreachable constraint warns now (later epochs may reach it) and is
        remembered in :attr:`unmet_constraint`, which test and export raise."""
        assert self.oos_index is not None
        args = (raw.score, raw.argmax, targets.numpy(), self.oos_index)
        try:
            threshold = choose_threshold(*args, operating_point=self.operating_point,
                                         min_oos_recall=self.min_oos_recall,
                                         min_in_scope_accuracy=self.min_in_scope_accuracy)
            self.unmet_constraint = ""
        except ConfigError as err:
            self.unmet_constraint = str(err)
            rank_zero_warn(f"{err} (this validation epoch; the nearest threshold is kept for now)")
            nearest = "oos_recall" if self.operating_point == "in_scope_accuracy" else "in_scope_accuracy"
            threshold = choose_threshold(*args, operating_point=nearest, min_oos_recall=0.0,
                                         min_in_scope_accuracy=0.0)
        return threshold

    def check_operating_point(self) -> None:
        """Raise the last validation's unmet constraint (see :meth:`_choose_threshold`)."""
        if self.unmet_constraint:
            raise ConfigError(self.unmet_constraint)

    def on_validation_epoch_start(self) -> None:
        self._outputs.clear()

    def on_validation_epoch_end(self) -> None:
        assert self.val_metrics is not None
        self.log_dict(self.val_metrics.compute(), prog_bar=True, sync_dist=True)
        self.val_metrics.reset()
        logits, pooled, targets = self._gathered()
        if self.oos_index is None or self.trainer.sanity_checking or len(targets) == 0:
            return
        self._fit_oos_stats()
        raw = self.decide(logits, pooled, threshold=None)  # scores before any threshold
        threshold = self._choose_threshold(raw, targets)
        self.oos_threshold.fill_(threshold)
        report = oos_metrics(self.decide(logits, pooled).index, targets.numpy(), self.oos_index)
        self.log("val/in_scope_acc", report["in_scope_acc"])
        self.log("val/oos_recall", report["oos_recall"])
        self.log("val/threshold", threshold if math.isfinite(threshold) else 0.0)
        self.log("val/oos_auroc", detection_metrics(raw.score, raw.argmax, targets.numpy(), self.oos_index)["auroc"])

    def on_test_epoch_start(self) -> None:
        self.check_operating_point()
        self._outputs.clear()

    def on_test_epoch_end(self) -> None:
        assert self.test_metrics is not None
        self.log_dict(self.test_metrics.compute(), sync_dist=True)
        self.test_metrics.reset()
        logits, pooled, targets = self._gathered()
        decisions = self.decide(logits, pooled)
        folder = Path(self.trainer.default_root_dir)
        if self.oos_index is not None and len(targets):
            report = oos_metrics(decisions.index, targets.numpy(), self.oos_index)
            self.log("test/in_scope_acc", report["in_scope_acc"])
            self.log("test/oos_recall", report["oos_recall"])
            log_detection(self, decisions, targets.numpy(), folder)
        if self.trainer.is_global_zero and len(targets):
            log_test_report(self, decisions, targets.numpy(), folder)

    # -- optimisation ---------------------------------------------------------------------------------
    def compile_targets(self) -> list[nn.Module]:
        """The encoder: the steps call ``net.logits_and_embedding``, which calls it (and the small head)."""
        return [self.net.encoder]

    def param_groups(self) -> list[dict[str, Any]]:
        """See :func:`trident_nlp.optim.param_groups`; ``encoder_lr=None`` is 5e-5 for a pretrained encoder."""
        pretrained = self.net.backbone != SCRATCH
        encoder_lr = self.encoder_lr if self.encoder_lr is not None else (5e-5 if pretrained else None)
        return optim.param_groups(self.net, encoder_lr, self.head_lr, self.layer_decay)

    # -- checkpoint and export ------------------------------------------------------------------------
    def checkpoint_extras(self) -> dict[str, Any]:
        """The tokenizer rides in the checkpoint beside the weights (it is data, megabytes for a pretrained one)."""
        return {"tokenizer_json": self.tokenizer_json, "unmet_constraint": self.unmet_constraint}

    def restore_checkpoint_extras(self, extras: dict[str, Any]) -> None:
        if extras.get("tokenizer_json"):
            self.tokenizer_json = extras["tokenizer_json"]
        self.unmet_constraint = str(extras.get("unmet_constraint", ""))

    def export_spec(self) -> ExportSpec:
        """See :func:`trident_nlp.export.export_spec`."""
        self.check_operating_point()
        return export_spec(self)

