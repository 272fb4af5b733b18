"""P2: NLP fine-tuning throughput, Trident vs the HF ``Trainer`` (defaults, and ``group_by_length``).

The default encoder (all-MiniLM-L6-v2) on the embedded intent data, batch 32, max length 64, one full epoch
per arm (so every arm sees every length once, whatever order its sampler picks), the first ``WARMUP`` steps not
timed. Trident runs the product's default recipe
through ``TridentCLI`` (``configs/default.yaml``); the HF arms run ``AutoModelForSequenceClassification`` under
``Trainer`` with its defaults (dynamic padding through ``DataCollatorWithPadding``) and with
``train_sampling_strategy="group_by_length"``. The wall time to a target accuracy is not measured (it needs
epochs); the row says so.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import Row, Settings, peak_rss_mb, reset_peak_rss

COMMAND = "uv run python -m benchmarks --only P2"
BATCH = 32
MAX_LENGTH = 64
WARMUP = 2


def _throughput(starts: list[float]) -> float:
    """Samples per second between the starts of the timed steps (the last entry, the end of training, is left
    out: Trident saves its checkpoints there, which is not a training step)."""
    timed = starts[WARMUP:-1]
    return BATCH * (len(timed) - 1) / (timed[-1] - timed[0])


def _steps_per_epoch(settings: Settings, backbone: str) -> int:
    from trident_nlp.data import IntentDataModule

    dm = IntentDataModule(data_dir=str(settings.workdir / "P2" / "data"), backbone=backbone)
    dm.prepare_data()
    return -(-len(dm.records["train"]) // BATCH)


def _trident(settings: Settings, steps: int, backbone: str) -> dict[str, Any]:
    from benchmarks.overhead import StepTimer, _run_cli
    from trident_nlp.cli import DOMAIN

    timer = StepTimer()
    root = settings.workdir / "P2"
    args = [f"--data.data_dir={root}/data", f"--data.backbone={backbone}", "--trainer.max_epochs=1",
            f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0", "--trainer.callbacks=[]",
            f"--trainer.default_root_dir={root}/trident", "--trainer.logger=false",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--trainer.num_sanity_val_steps=0", f"--data.batch_size={BATCH}", f"--data.max_length={MAX_LENGTH}"]
    if settings.quick:
        args += ["--model.hidden_size=32", "--model.num_layers=1", "--model.num_heads=2"]
    reset_peak_rss()
    _run_cli(DOMAIN, args, lambda cli: cli.trainer.callbacks.append(timer))
    return {"samples_per_s": _throughput(timer.starts), "rss_mb": peak_rss_mb()}


def _hf(settings: Settings, steps: int, strategy: str, backbone: str) -> dict[str, Any]:
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

    train = Rows(dm.records["train"])

    starts: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args: Any, st: Any, control: Any, **kw: Any) -> None:
            starts.append(time.perf_counter())

        def on_train_end(self, args: Any, st: Any, control: Any, **kw: Any) -> None:
            starts.append(time.perf_counter())

    out = settings.workdir / "P2" / f"hf-{strategy}"
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=BATCH, max_steps=steps,
                             eval_strategy="no", save_strategy="no", report_to=[], logging_strategy="no",
                             disable_tqdm=True, seed=0, train_sampling_strategy=strategy)
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer),
                      callbacks=[Clock()])
    reset_peak_rss()
    trainer.train()
    return {"samples_per_s": _throughput(starts), "rss_mb": peak_rss_mb()}


def run(settings: Settings) -> list[Row]:
    backbone = "scratch" if settings.quick else "auto"
    steps = settings.pick(5, _steps_per_epoch(settings, backbone))
    results = {
        "hf_defaults": _hf(settings, steps, "random", backbone),
        "trident": _trident(settings, steps, backbone),
        "hf_group_by_length": _hf(settings, steps, "group_by_length", backbone),
    }
    tput = {k: v["samples_per_s"] for k, v in results.items()}
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
            notes=f"{steps} steps (one epoch) per arm, first {WARMUP} untimed, step-start to step-start, "
            f"batch {BATCH}, max length {MAX_LENGTH}, all cores; "
            f"peak RSS MiB baseline {results[base]['rss_mb']:.0f} / Trident {results['trident']['rss_mb']:.0f}",
            extra={"results": results},
        ))
    rows.append(Row(
        id="P2", compare="NLP wall time to a target test accuracy", baseline_name="HF Trainer defaults",
        baseline=None, trident=None, unit="s", ratio=None, ratio_def="baseline / trident", target=">= 1.5x",
        met=None, command=COMMAND,
        notes="not measured on this machine: one MiniLM epoch took ~7 min per arm under the shared load (3 arms x "
        "several epochs is far over the 10-minute budget); the throughput rows above bound it",
    ))
    return rows
