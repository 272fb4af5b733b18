"""Helpers shared by the nlp tests: tiny labelled files and a tiny IntentModule."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from trident_nlp.model import tiny_classifier
from trident_nlp.module import IntentModule
from trident_nlp.text import train_wordpiece

INTENT_TEXTS = {
    "refund": ["i want my money back", "refund my order please", "give me a refund", "money back for the shoes"],
    "track": ["where is my package", "track my order", "when will my parcel arrive", "status of my delivery"],
    "password": ["i forgot my password", "reset my password", "cannot log in password", "new password please"],
    "oos": ["what is the weather", "tell me a joke", "who won the game", "how tall is everest"],
}


def records(labels: list[str] | None = None) -> list[dict[str, str]]:
    return [
        {"text": text, "label": label}
        for label, texts in INTENT_TEXTS.items()
        if labels is None or label in labels
        for text in texts
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_splits(folder: Path) -> dict[str, Path]:
    """train/val/test JSONL files with the same four labels."""
    rows = records()
    return {
        "train": write_jsonl(folder / "train.jsonl", rows),
        "val": write_jsonl(folder / "val.jsonl", rows[::2]),
        "test": write_jsonl(folder / "test.jsonl", rows[1::2]),
    }


def tiny_module(labels: list[str] | None = None, **kwargs) -> IntentModule:
    """A tiny scratch IntentModule built in Python (as a library user would), with its WordPiece tokenizer."""
    labels = labels or sorted(INTENT_TEXTS)
    tokenizer = train_wordpiece([r["text"] for r in records()], vocab_size=200)
    net = tiny_classifier(num_labels=len(labels), vocab_size=tokenizer.get_vocab_size(), max_length=32)
    return IntentModule(net=net, labels=labels, tokenizer_json=tokenizer.to_str(), **kwargs)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread: tiny models are overhead-bound, and on a shared 2-core runner two OpenMP threads
    per process oversubscribe the cores (measured ~20x slower steps under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
