"""Speech data: the dataset, dynamic-padding collate and the DataModule over NeMo-style manifests.

Manifests are read and validated in :mod:`trident_audio.manifest`. Every problem a user can cause is a
:class:`~trident_core.errors.DataError` naming the manifest, the line and the key, raised when the manifest is
read (header checks) or when the audio is decoded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from trident_audio.augment import Augmentation
from trident_audio.manifest import Utterance, read_manifest
from trident_audio.text import TextNormalizer, Tokenizer, tokenizer_from_dict, train_bpe
from trident_audio.waveform import AudioReadError, read_audio
from trident_core.data import BucketSampler, TridentDataModule
from trident_core.errors import ConfigError, DataError

log = logging.getLogger(__name__)


class SpeechDataset(Dataset[dict[str, Any]]):
    """Decodes the audio of validated utterances; a file that fails to decode is a DataError naming its line."""

    def __init__(self, utterances: list[Utterance], sample_rate: int) -> None:
        self.utterances = utterances
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> dict[str, Any]:
        utt = self.utterances[index]
        try:
            waveform = read_audio(utt.audio_path, self.sample_rate, utt.start, utt.frames)  # only the segment
        except (AudioReadError, OSError) as err:
            raise DataError(f"{utt.audio_path}: {err}", path=utt.manifest, line=utt.line,
                            key="audio_filepath") from None
        return {
            "waveform": torch.from_numpy(np.ascontiguousarray(waveform)),
            "tokens": torch.tensor(utt.tokens, dtype=torch.long),
            "text": utt.text,
            "voice": utt.voice,
            "audio_filepath": str(utt.audio_path),
            "sample_rate": self.sample_rate,
            "index": index,  # seeds the utterance's augmentation with the epoch (data.augment)
        }


def collate_speech(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad waveforms and token ids of a batch to its longest item (dynamic padding)."""
    lengths = torch.tensor([len(i["waveform"]) for i in items], dtype=torch.long)
    target_lengths = torch.tensor([len(i["tokens"]) for i in items], dtype=torch.long)
    waveforms = torch.zeros(len(items), int(lengths.max()))
    targets = torch.zeros(len(items), max(1, int(target_lengths.max())), dtype=torch.long)
    for row, item in enumerate(items):
        waveforms[row, : len(item["waveform"])] = item["waveform"]
        targets[row, : len(item["tokens"])] = item["tokens"]
    return {
        "waveform": waveforms,
        "lengths": lengths,
        "targets": targets,
        "target_lengths": target_lengths,
        "text": [i["text"] for i in items],
        "voice": [i["voice"] for i in items],
        "audio_filepath": [i["audio_filepath"] for i in items],
        "sample_rate": items[0]["sample_rate"],  # one dataset, one rate: the module checks it against its net's
        "index": torch.tensor([i["index"] for i in items], dtype=torch.long),
    }


def augment_batch(batch: dict[str, Any], augment: Augmentation, *, seed: int, epoch: int) -> dict[str, Any]:
    """``augment`` every utterance of a collated batch (seeded by ``seed``, ``epoch`` and its dataset index) and
    pad again (speed perturbation changes lengths)."""
    rate = batch["sample_rate"]
    waves = [augment(wave[:n], rate, seed=seed, epoch=epoch, index=int(i))
             for wave, n, i in zip(batch["waveform"], batch["lengths"].tolist(), batch["index"], strict=True)]
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
    padded = torch.zeros(len(waves), int(lengths.max()), dtype=batch["waveform"].dtype)
    for row, wave in enumerate(waves):
        padded[row, : len(wave)] = wave
    return {**batch, "waveform": padded, "lengths": lengths}


class DurationBatchSampler(Sampler[list[int]]):
    """Batches by audio duration: utterances sorted by duration are packed so that no batch holds more than
    ``max_seconds`` of padded audio (its size times its longest utterance); the batches are fixed, their order is
    shuffled per epoch from ``seed + epoch`` (the same on every rank).

    It yields whole batches (lists of indices), for a ``DataLoader(batch_size=None)`` over a :class:`BatchDataset`.
    Under DDP Lightning wraps it in a ``DistributedSamplerWrapper`` that deals the batches to the ranks and repeats a
    few to even them out, so every rank runs the same number of batches (a rank waiting for another's gradients
    would hang); that count only holds because the batches are the same every epoch.

    Args:
        durations: Seconds of every utterance.
        max_seconds: Padded seconds per batch; at least twice the longest utterance (no batch of one).
        shuffle: Shuffle the batch order each epoch.
        seed: Base seed.
    """

    def __init__(self, durations: list[float], max_seconds: float, shuffle: bool = True, seed: int = 0) -> None:
        if 2 * max(durations) > max_seconds:
            raise ConfigError(f"data.batch_duration {max_seconds}s holds fewer than two of the longest utterances "
                              f"({max(durations):.2f}s); raise it or lower data.max_duration")
        self.batches: list[list[int]] = []
        for index in sorted(range(len(durations)), key=lambda i: (durations[i], i)):
            batch = self.batches[-1] if self.batches else None
            # sorted ascending: the newcomer is the batch's longest utterance
            if batch is None or (len(batch) + 1) * durations[index] > max_seconds:
                self.batches.append([index])
            else:
                batch.append(index)
        # no batch of one: BatchNorm cannot train on it, and the module skips it (under DDP on one rank only, which
        # would leave the other waiting); the shortest utterance joins the last batch (2 x longest fits the budget)
        if len(self.batches) > 1 and len(self.batches[-1]) == 1 and len(self.batches[0]) > 2:
            self.batches[-1].insert(0, self.batches[0].pop(0))
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use the order of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        order = list(range(len(self.batches)))
        if self.shuffle:
            order = torch.randperm(len(order), generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
            self.epoch += 1  # as BucketSampler: the DDP wrapper iterates again without set_epoch
        for i in order:
            yield list(self.batches[i])


class BatchDataset(Dataset[list[dict[str, Any]]]):
    """Indexes a dataset with a list of indices (one batch of :class:`DurationBatchSampler`)."""

    def __init__(self, dataset: SpeechDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: list[int]) -> list[dict[str, Any]]:  # type: ignore[override]
        return [self.dataset[i] for i in indices]


class SpeechDataModule(TridentDataModule):
    """Manifests to padded batches, bucketed by duration; synthesises the default corpus when none is given.

    Args:
        data_dir: Folder of the embedded default corpus (used when ``train_manifest`` is ``None``).
        train_manifest: Training manifest (JSONL); ``None`` uses the default corpus.
        val_manifest: Validation manifest; required with ``train_manifest``.
        test_manifest: Test manifest; optional with ``train_manifest``.
        sample_rate: Rate the audio is resampled to; the CLI links it to ``model.net.init_args.sample_rate``.
        min_duration: Shorter training utterances are skipped.
        max_duration: Longer training utterances are skipped.
        max_audio_seconds: Audio longer than this in any manifest is an error.
        tokenizer: ``"char"`` or ``"bpe"`` (SentencePiece trained on the training transcripts).
        bpe_vocab_size: Pieces of the BPE model.
        lowercase: Fold transcripts to lower case (the character vocabulary follows).
        corpus_sentences: Distinct sentences of the synthesised default corpus.
        bucket_factor: Batches per length bucket of the training sampler.
        batch_size: Utterances per batch and device (validation and test always; training unless
            ``batch_duration`` is set).
        batch_duration: Training batches by duration instead: at most this many seconds of padded audio per batch
            and device (:class:`DurationBatchSampler`), at least ``2 * max_duration``; ``None`` uses ``batch_size``.
        num_workers: DataLoader workers.
        persistent_workers: Keep workers between epochs.
        pin_memory: Pin memory (``None``: when CUDA is available).
        seed: Seed of shuffling, of the synthesised corpus and of the augmentation.
        augment: Waveform augmentation of training batches (:class:`~trident_audio.augment.Augmentation`, e.g. the
            telephony config's); seeded by ``seed``, the epoch and the utterance, so resumes replay it exactly.
    """

    def __init__(
        self,
        data_dir: str = "data/audio",
        train_manifest: str | None = None,
        val_manifest: str | None = None,
        test_manifest: str | None = None,
        sample_rate: int = 16000,
        min_duration: float = 0.1,
        max_duration: float = 20.0,
        max_audio_seconds: float = 600.0,
        tokenizer: str = "char",
        bpe_vocab_size: int = 128,
        lowercase: bool = True,
        corpus_sentences: int = 600,
        bucket_factor: int = 50,
        batch_size: int = 16,
        batch_duration: float | None = None,
        num_workers: int = 0,
        persistent_workers: bool = True,
        pin_memory: bool | None = None,
        seed: int = 0,
        augment: Augmentation | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, persistent_workers, pin_memory, seed)
        self.augment = augment
        if batch_duration is not None and not batch_duration >= 2 * max_duration:
            raise ConfigError(f"data.batch_duration ({batch_duration}s) must be at least twice data.max_duration "
                              f"({max_duration}s), so the longest training utterances still come two to a batch "
                              "(BatchNorm cannot train on a batch of one)")
        self.batch_duration = batch_duration
        if tokenizer not in ("char", "bpe"):
            raise ConfigError(f"data.tokenizer must be 'char' or 'bpe', got {tokenizer!r}")
        if train_manifest is not None and val_manifest is None:
            raise ConfigError("data.val_manifest is required when data.train_manifest is given")
        if not 0 <= min_duration < max_duration:
            raise ConfigError(f"need 0 <= data.min_duration < data.max_duration, got {min_duration}, {max_duration}")
        self.data_dir = data_dir
        self.train_manifest = train_manifest
        self.val_manifest = val_manifest
        self.test_manifest = test_manifest
        self.sample_rate = sample_rate
        self.min_duration = min_duration
        self.max_duration = max_duration
        self.max_audio_seconds = max_audio_seconds
        self.tokenizer_kind = tokenizer
        self.bpe_vocab_size = bpe_vocab_size
        self.lowercase = lowercase
        self.corpus_sentences = corpus_sentences
        self.bucket_factor = bucket_factor
        self.datasets: dict[str, SpeechDataset] = {}

    # -- default corpus -------------------------------------------------------------------------------
    def uses_default_data(self) -> bool:
        return self.train_manifest is None

    def build_default_data(self) -> None:
        from trident_audio.defaults import build_corpus

        build_corpus(Path(self.data_dir), sentences=self.corpus_sentences, seed=self.seed,
                     sample_rate=self.sample_rate)

    def manifest(self, split: str) -> Path | None:
        """Path of the ``train``/``val``/``test`` manifest in use (``None`` when not configured)."""
        if self.uses_default_data():
            return Path(self.data_dir) / f"{split}.jsonl"
        value = {"train": self.train_manifest, "val": self.val_manifest, "test": self.test_manifest}[split]
        return Path(value) if value else None

    # -- tokenizer ------------------------------------------------------------------------------------
    @cached_property
    def tokenizer_config(self) -> dict[str, Any]:
        """The tokenizer as a dict (linked to ``model.tokenizer``; BPE is trained here on :attr:`train_texts`)."""
        normalizer = TextNormalizer(lowercase=self.lowercase)
        if self.tokenizer_kind == "char":
            from trident_audio.text import CharTokenizer

            return CharTokenizer(normalizer=normalizer.to_dict()).to_dict()
        return train_bpe(self.train_texts, self.bpe_vocab_size, normalizer.to_dict()).to_dict()

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return tokenizer_from_dict(self.tokenizer_config)

    @cached_property
    def train_texts(self) -> list[str]:
        """Normalised training transcripts: the BPE model's, and the word LM's (linked to ``model.lm_texts``)."""
        self.prepare_data()
        path = self.manifest("train")
        assert path is not None
        return [u.text for u in read_manifest(path, TextNormalizer(lowercase=self.lowercase),
                                              max_audio_seconds=self.max_audio_seconds)]

    # -- Lightning hooks ------------------------------------------------------------------------------
    def _dataset(self, split: str) -> SpeechDataset:
        if split not in self.datasets:
            path = self.manifest(split)
            if path is None:
                raise ConfigError(f"data.{split}_manifest is not set; pass --data.{split}_manifest FILE")
            utterances = read_manifest(path, tokenizer=self.tokenizer, max_audio_seconds=self.max_audio_seconds,
                                       sample_rate=self.sample_rate)
            if split == "train":
                kept = [u for u in utterances if self.min_duration <= u.duration <= self.max_duration]
                if len(kept) < len(utterances):
                    log.warning("%s: skipped %d utterances outside [%s, %s] s", path, len(utterances) - len(kept),
                                self.min_duration, self.max_duration)
                if not kept:
                    raise DataError(f"no utterance within [{self.min_duration}, {self.max_duration}] s "
                                    "(data.min_duration / data.max_duration)", path=path)
                utterances = kept
            self.datasets[split] = SpeechDataset(utterances, self.sample_rate)
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self._dataset("train")
            self._dataset("val")
        if stage == "validate":
            self._dataset("val")
        if stage == "test":
            self._dataset("test")

    def train_dataloader(self) -> DataLoader[Any]:
        dataset = self._dataset("train")
        if self.batch_duration is not None:
            batches = DurationBatchSampler([u.duration for u in dataset.utterances], self.batch_duration,
                                           seed=self.seed)
            return DataLoader(BatchDataset(dataset), batch_size=None, sampler=batches, collate_fn=collate_speech,
                              num_workers=self.num_workers, pin_memory=self.pin_memory,
                              persistent_workers=self.persistent_workers and self.num_workers > 0)
        lengths = [int(u.duration * 1000) for u in dataset.utterances]
        sampler = BucketSampler(lengths, self.batch_size, shuffle=True, seed=self.seed,
                                bucket_factor=self.bucket_factor)
        return self.loader(dataset, sampler=sampler, collate_fn=collate_speech)

    def _eval_loader(self, split: str) -> DataLoader[Any]:
        dataset = self._dataset(split)
        lengths = [int(u.duration * 1000) for u in dataset.utterances]
        # sorted by duration (little padding), deterministic
        sampler = BucketSampler(lengths, self.batch_size, shuffle=False, bucket_factor=len(lengths))
        return self.loader(dataset, sampler=sampler, collate_fn=collate_speech)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment training batches on the CPU, in the main process, before they reach the device."""
        trainer = self.trainer
        if self.augment is None or trainer is None or not trainer.training:
            return batch
        return augment_batch(batch, self.augment, seed=self.seed, epoch=trainer.current_epoch)

    def val_dataloader(self) -> DataLoader[Any]:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader[Any]:
        return self._eval_loader("test")

