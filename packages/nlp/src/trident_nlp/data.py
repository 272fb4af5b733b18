"""Intent data: the tokenizer choice, dynamic padding and length-bucketed batches (readers: :mod:`.records`)."""

from __future__ import annotations

import difflib
import logging
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from trident_core.data import BucketSampler, TridentDataModule, build_once
from trident_core.errors import ConfigError, DataError
from trident_nlp.defaults import DATASET_VERSION, OOS_LABEL, build_default_dataset
from trident_nlp.records import MAX_TEXT_CHARS, Record, read_records, read_texts, stratified_split
from trident_nlp.text import (
    AUTO,
    SCRATCH,
    TextEncoder,
    load_pretrained_tokenizer,
    pad_batch,
    resolve_backbone,
    train_wordpiece,
)

__all__ = ["MAX_TEXT_CHARS", "IntentDataModule", "IntentDataset", "PadCollate", "Record", "read_records", "read_texts",
           "stratified_split"]

log = logging.getLogger(__name__)


class IntentDataset(Dataset[dict[str, Any]]):
    """Token ids and label indices of a list of records (and the texts, for predictions)."""

    def __init__(self, ids: list[list[int]], labels: list[int], texts: list[str] | None = None) -> None:
        self.ids = ids
        self.labels = labels
        self.texts = texts

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"input_ids": self.ids[index], "label": self.labels[index]}
        if self.texts is not None:
            item["text"] = self.texts[index]
        return item


class PadCollate:
    """Pads a batch to its longest sequence (dynamic padding, :func:`trident_nlp.text.pad_batch`); texts, when
    the dataset has them, travel in the batch so predictions carry them."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        ids, mask = pad_batch([item["input_ids"] for item in batch], self.pad_id)
        out: dict[str, Any] = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask),
            "labels": torch.tensor([item["label"] for item in batch], dtype=torch.long),
        }
        if "text" in batch[0]:
            out["text"] = [item["text"] for item in batch]
        return out


class IntentDataModule(TridentDataModule):
    """Labelled utterances for intent classification, with out-of-scope queries under ``oos_label``.

    Give ``train_file`` (+ ``val_file``, ``test_file``) or one ``file`` split by ``split`` with ``seed``;
    with none, the embedded customer-support dataset is written to ``data_dir`` and used. The label set
    comes from the training data. The tokenizer belongs to ``backbone``: ``"auto"`` (all-MiniLM-L6-v2 when
    installed, else ``"scratch"``), ``"scratch"`` (a WordPiece built on the training texts), a local folder
    or a hub id. The model receives labels, backbone, the tokenizer and its vocabulary size through CLI links
    (``labels``, ``num_labels``, ``backbone``, ``tokenizer_json``, ``vocab_size``, ``max_length``).

    Args:
        data_dir: Folder of the embedded default dataset.
        train_file: Training JSONL/CSV file.
        val_file: Validation file; without it ``split[1]`` of the training file is held out.
        test_file: Test file; without it the test stage uses the validation set.
        file: One file split into train/validation/test by ``split``.
        predict_file: Texts for ``predict`` (one per line, or JSONL with ``text_column``).
        split: Train/validation/test fractions for ``file``.
        text_column: Column/key holding the utterance.
        label_column: Column/key holding the intent.
        oos_label: Label of out-of-scope queries (if the data has them).
        backbone: Which encoder (and so which tokenizer) to use.
        max_length: Truncation length in tokens.
        wordpiece_vocab_size: Largest vocabulary of the WordPiece built for a ``scratch`` backbone (the
            tokenizer's actual size is :attr:`vocab_size`).
        bucket_factor: Batches per length-sorting bucket.
    """

    def __init__(
        self,
        data_dir: str = "data/nlp",
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        file: str | None = None,
        predict_file: str | None = None,
        split: tuple[float, float, float] = (0.8, 0.1, 0.1),
        text_column: str = "text",
        label_column: str = "label",
        oos_label: str = OOS_LABEL,
        backbone: str = AUTO,
        max_length: int = 64,
        wordpiece_vocab_size: int = 8000,
        bucket_factor: int = 50,
        batch_size: int = 32,
        num_workers: int = 0,
        persistent_workers: bool = True,
        pin_memory: bool | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            persistent_workers=persistent_workers,
            pin_memory=pin_memory,
            seed=seed,
        )
        if file is not None and train_file is not None:
            raise ConfigError("set either data.file (split by data.split) or data.train_file, not both")
        if max_length < 3:
            raise ConfigError(f"data.max_length must be >= 3, got {max_length}")
        self.data_dir = data_dir
        self.train_file, self.val_file, self.test_file, self.file = train_file, val_file, test_file, file
        self.predict_file = predict_file
        self.split = tuple(split)
        self.text_column, self.label_column, self.oos_label = text_column, label_column, oos_label
        self.requested_backbone = backbone
        self.max_length = max_length
        self.wordpiece_vocab_size = wordpiece_vocab_size
        self.bucket_factor = bucket_factor
        self.datasets: dict[str, IntentDataset] = {}
        self._test_is_validation = False

    # -- default data ---------------------------------------------------------------------------------
    def uses_default_data(self) -> bool:
        return self.train_file is None and self.file is None

    def build_default_data(self) -> None:
        build_once(Path(self.data_dir), build_default_dataset, version=DATASET_VERSION)

    # -- records, labels, tokenizer (computed lazily so CLI links can read them at instantiation) -------
    def _resolve(self, name: str | None) -> Path | None:
        """A configured path; a relative one missing from the working directory is looked up in data_dir."""
        if name is None:
            return None
        path = Path(name)
        if path.is_absolute() or path.exists():
            return path
        root = Path(self.data_dir).resolve()
        candidate = (root / path).resolve()
        if not candidate.is_relative_to(root):
            raise DataError(f"path escapes the data folder {root}", path=name)
        return candidate

    def _read(self, name: str | Path | None) -> list[Record] | None:
        path = self._resolve(None if name is None else str(name))
        return None if path is None else read_records(path, self.text_column, self.label_column)

    @cached_property
    def records(self) -> dict[str, list[Record]]:
        """Records of ``train``, ``validation`` and ``test`` (validation/test may reuse held-out data)."""
        if self.uses_default_data():
            self.prepare_data()
            root = Path(self.data_dir)
            train, val, test = (self._read(root / f"{s}.jsonl") for s in ("train", "validation", "test"))
        elif self.file is not None:
            everything = self._read(self.file) or []
            train, val, test = stratified_split(everything, self.split, self.seed)
            if not train or not val:
                raise DataError(f"split {list(self.split)} leaves an empty train or validation part", path=self.file)
        else:
            train, val, test = (
                self._read(self.train_file),
                self._read(self.val_file),
                self._read(self.test_file),
            )
            if val is None:
                train, val = stratified_split(train or [], (1 - self.split[1], self.split[1]), self.seed)
        if not test:
            self._test_is_validation = True
            test = val
        return {"train": train or [], "validation": val or [], "test": test or []}

    @cached_property
    def labels(self) -> list[str]:
        """Sorted label set of the training data (of the whole file when one file is split)."""
        source = self._read(self.file) if self.file is not None else self.records["train"]
        labels = sorted({r.label for r in source or []})
        if len(labels) < 2:
            where = self.file or self.train_file or self.data_dir
            raise DataError(f"training data needs at least 2 labels, found {labels}", path=where, key=self.label_column)
        return labels

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @cached_property
    def backbone(self) -> str:
        """The backbone actually used (``auto`` resolved)."""
        return resolve_backbone(self.requested_backbone)

    @cached_property
    def tokenizer_json(self) -> str:
        """The serialised tokenizer: the backbone's own, or a WordPiece built on the training texts."""
        if self.backbone == SCRATCH:
            texts = [r.text for r in self.records["train"]]
            return train_wordpiece(texts, vocab_size=self.wordpiece_vocab_size).to_str()
        return load_pretrained_tokenizer(self.backbone).to_str()

    @cached_property
    def encoder(self) -> TextEncoder:
        return TextEncoder(self.tokenizer_json, self.max_length)

    @property
    def vocab_size(self) -> int:
        """Size of the tokenizer's vocabulary (the model's embedding rows)."""
        return self.encoder.tokenizer.get_vocab_size(with_added_tokens=True)

    # -- Lightning hooks ----------------------------------------------------------------------------
    def _dataset(self, split: str) -> IntentDataset:
        index = {label: i for i, label in enumerate(self.labels)}
        records = self.records[split]
        for r in records:
            if r.label not in index:
                close = difflib.get_close_matches(r.label, self.labels, n=3)
                known = f"{self.labels}" if len(self.labels) <= 12 else f"{len(self.labels)} labels"
                hint = f"; did you mean {close}?" if close else ""
                raise DataError(
                    f"label {r.label!r} does not occur in the training data ({known}){hint}",
                    path=r.path,
                    line=r.line,
                    key=self.label_column,
                )
        ids = self.encoder.encode([r.text for r in records])
        return IntentDataset(ids, [index[r.label] for r in records])

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",)}.get(stage or "", ())
        if stage is None:
            splits = ("train", "validation", "test")
        for split in splits:
            if split not in self.datasets:
                self.datasets[split] = self._dataset(split)
        if stage == "test" and self._test_is_validation:
            log.warning("no test data (data.test_file, or a data.split test part): `test` runs on the VALIDATION "
                        "set, which chose the out-of-scope threshold; its figures are optimistic")
        if stage == "predict":
            if self.predict_file is None:
                raise ConfigError("predict needs data.predict_file (text lines or JSONL)")
            path = self._resolve(self.predict_file)
            texts = read_texts(path, self.text_column)  # type: ignore[arg-type]
            self.datasets["predict"] = IntentDataset(self.encoder.encode(texts), [-1] * len(texts), texts)

    def _loader(self, split: str, shuffle: bool) -> DataLoader[Any]:
        dataset = self.datasets[split]
        sampler = BucketSampler(
            [len(x) for x in dataset.ids],
            self.batch_size,
            shuffle=shuffle,
            seed=self.seed,
            bucket_factor=self.bucket_factor,
        )
        return self.loader(dataset, sampler=sampler, collate_fn=PadCollate(self.encoder.pad_id))

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader[Any]:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader[Any]:
        # keep file order so predictions line up with the input lines
        return self.loader(self.datasets["predict"], collate_fn=PadCollate(self.encoder.pad_id))
