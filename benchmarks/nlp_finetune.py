"""P2: NLP fine-tuning throughput and time to a target held-out accuracy, Trident vs the HF ``Trainer``.

Reduced but honest settings (2 CPU cores): the default encoder (all-MiniLM-L6-v2), the embedded intent data,
``EPOCHS`` epochs for every arm, batch 32, max length 64, evaluation on the validation split after every epoch.
Trident runs the product's default recipe through ``TridentCLI`` (``configs/default.yaml``); the HF arms run
``AutoModelForSequenceClassification`` under ``Trainer`` with its defaults (dynamic padding through
``DataCollatorWithPadding``) and with ``train_sampling_strategy="group_by_length"``. Throughput counts training
time only (no evaluation); the time to target counts everything from the first step, evaluation included.
"""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch.callbacks import Callback

from benchmarks.common import Row, Settings, peak_rss_mb, reset_peak_rss

COMMAND = "uv run --with accelerate python -m benchmarks --only P2"
TARGET_ACC = 0.85
BATCH = 32
MAX_LENGTH = 64


class EpochClock(Callback):
    """Training time per epoch (validation excluded) and (elapsed, val/acc) after each validation."""

    def __init__(self) -> None:
        self.t0 = 0.0
        self.epoch_start = 0.0
        self.train_s = 0.0
        self.samples = 0
        self.evals: list[tuple[float, float]] = []

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.t0 = time.perf_counter()

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.epoch_start = time.perf_counter()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.samples += len(batch["labels"])

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.train_s += time.perf_counter() - self.epoch_start

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            acc = float(trainer.callback_metrics.get("val/acc", float("nan")))
            self.evals.append((time.perf_counter() - self.t0, acc))


def _trident(settings: Settings, epochs: int, backbone: str) -> dict[str, Any]:
    from benchmarks.overhead import _run_cli
    from trident_nlp.cli import DOMAIN

    clock = EpochClock()
    root = settings.workdir / "P2"
    args = [f"--data.data_dir={root}/data", f"--data.backbone={backbone}", f"--trainer.max_epochs={epochs}",
            f"--trainer.default_root_dir={root}/trident", "--trainer.logger=false",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--trainer.num_sanity_val_steps=0", f"--data.batch_size={BATCH}", f"--data.max_length={MAX_LENGTH}"]
    if settings.quick:
        args += ["--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2", "--model.hidden_size=32",
                 "--model.num_layers=1", "--model.num_heads=2"]
    reset_peak_rss()
    _run_cli(DOMAIN, args, lambda cli: cli.trainer.callbacks.append(clock))
    return {"train_s": clock.train_s, "samples": clock.samples, "evals": clock.evals, "rss_mb": peak_rss_mb()}


def _hf(settings: Settings, epochs: int, strategy: str, backbone: str) -> dict[str, Any]:
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from trident_nlp.data import IntentDataModule
    from trident_nlp.text import pretrained_location

    dm = IntentDataModule(data_dir=str(settings.workdir / "P2" / "data"), backbone=backbone)
    dm.prepare_data()
    labels = dm.labels
    index = {label: i for i, label in enumerate(labels)}
    if dm.backbone == "scratch":  # quick mode only: a tiny BERT on the Trident tokenizer
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast(tokenizer_object=dm.encoder.tokenizer, pad_token="[PAD]")
        model = BertForSequenceClassification(BertConfig(vocab_size=dm.vocab_size, hidden_size=32, num_hidden_layers=1,
                                                         num_attention_heads=2, intermediate_size=128,
                                                         num_labels=len(labels)))
    else:
        location = pretrained_location(dm.backbone)
        tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(location, num_labels=len(labels),
                                                                   local_files_only=True)

    class Rows(torch.utils.data.Dataset):
        def __init__(self, records: list[Any]) -> None:
            enc = tokenizer([r.text for r in records], truncation=True, max_length=MAX_LENGTH)
            self.items = [{"input_ids": ids, "attention_mask": m, "labels": index[r.label]}
                          for ids, m, r in zip(enc["input_ids"], enc["attention_mask"], records, strict=True)]

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, i: int) -> dict[str, Any]:
            return self.items[i]

    train, val = Rows(dm.records["train"]), Rows(dm.records["validation"])
    if settings.quick:
        train.items, val.items = train.items[: 3 * BATCH], val.items[: 2 * BATCH]

    state: dict[str, Any] = {"train_s": 0.0, "evals": [], "samples": 0}

    class Clock(TrainerCallback):
        def on_train_begin(self, args: Any, st: Any, control: Any, **kw: Any) -> None:
            state["t0"] = time.perf_counter()

        def on_epoch_begin(self, args: Any, st: Any, control: Any, **kw: Any) -> None:
            state["epoch_start"] = time.perf_counter()

        def on_epoch_end(self, args: Any, st: Any, control: Any, **kw: Any) -> None:
            state["train_s"] += time.perf_counter() - state["epoch_start"]

        def on_evaluate(self, args: Any, st: Any, control: Any, metrics: Any = None, **kw: Any) -> None:
            state["evals"].append((time.perf_counter() - state["t0"], float(metrics.get("eval_accuracy", "nan"))))

    def accuracy(pred: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    out = settings.workdir / "P2" / f"hf-{strategy}"
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=BATCH, per_device_eval_batch_size=BATCH,
                             num_train_epochs=epochs, eval_strategy="epoch", save_strategy="no", report_to=[],
                             logging_strategy="no", disable_tqdm=True, seed=0, train_sampling_strategy=strategy)
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                      data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=accuracy,
                      callbacks=[Clock()])
    reset_peak_rss()
    trainer.train()
    state["samples"] = len(train) * epochs
    state["rss_mb"] = peak_rss_mb()
    return state


def _time_to(evals: list[tuple[float, float]], target: float) -> float | None:
    return next((t for t, acc in evals if acc >= target), None)


def run(settings: Settings) -> list[Row]:
    epochs = settings.pick(1, 2)
    backbone = "scratch" if settings.quick else "auto"
    results = {
        "hf_defaults": _hf(settings, epochs, "random", backbone),
        "trident": _trident(settings, epochs, backbone),
        "hf_group_by_length": _hf(settings, epochs, "group_by_length", backbone),
    }
    tput = {k: v["samples"] / v["train_s"] for k, v in results.items()}
    ttt = {k: _time_to(v["evals"], TARGET_ACC) for k, v in results.items()}
    rows = []
    for base, name in (("hf_defaults", "HF Trainer defaults (dynamic padding)"),
                       ("hf_group_by_length", 'HF Trainer, train_sampling_strategy="group_by_length"')):
        ratio = tput["trident"] / tput[base]
        rows.append(Row(
            id="P2", compare=f"NLP fine-tuning throughput ({'MiniLM-L6' if backbone == 'auto' else 'tiny'})",
            baseline_name=name, baseline=round(tput[base], 2), trident=round(tput["trident"], 2), unit="samples/s",
            ratio=round(ratio, 3), ratio_def="trident / baseline throughput (higher is faster)",
            target=">= 1.5x" if base == "hf_defaults" else "report",
            met=ratio >= 1.5 if base == "hf_defaults" else None, command=COMMAND,
            notes=f"{epochs} epoch(s), batch {BATCH}, max length {MAX_LENGTH}, training time only; peak RSS MiB "
            f"{name.split(',')[0]} {results[base]['rss_mb']:.0f} / Trident {results['trident']['rss_mb']:.0f}",
            extra={"results": results},
        ))
        t, b = ttt["trident"], ttt[base]
        rows.append(Row(
            id="P2", compare=f"wall time to validation accuracy >= {TARGET_ACC}", baseline_name=name,
            baseline=None if b is None else round(b, 1), trident=None if t is None else round(t, 1), unit="s",
            ratio=None if t is None or b is None else round(b / t, 3), ratio_def="baseline / trident",
            target=">= 1.5x" if base == "hf_defaults" else "report",
            met=None if base != "hf_defaults" else (t is not None and (b is None or b / t >= 1.5)), command=COMMAND,
            notes=f"accuracy after each epoch: Trident {[round(a, 3) for _, a in results['trident']['evals']]}, "
            f"baseline {[round(a, 3) for _, a in results[base]['evals']]}; '-' = target not reached in {epochs} "
            "epoch(s). Recipes differ as a user would run them: Trident's default (mean pooling, head lr 1e-3, "
            "encoder lr 5e-5 with layer decay 0.9, label smoothing 0.1) vs HF defaults (CLS head, lr 5e-5)",
        ))
    return rows
