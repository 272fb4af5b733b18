"""Speech data: NeMo-style JSONL manifests, the dataset, dynamic-padding collate and the DataModule.

A manifest line is ``{"audio_filepath": ..., "duration": ..., "text": ...}`` (optionally ``"voice"`` or
``"speaker"``, used for the per-voice WER table). Relative paths resolve from the manifest's folder and may
not leave it. Every problem a user can cause is a :class:`~trident_core.errors.DataError` naming the
manifest, the line and the key, raised when the manifest is read (header checks) or when the audio is decoded.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from trident_audio.text import OutOfVocabularyError, TextNormalizer, Tokenizer, tokenizer_from_dict, train_bpe
from trident_audio.transforms import AudioReadError, audio_info, read_audio
from trident_core.data import BucketSampler, TridentDataModule
from trident_core.errors import ConfigError, DataError

log = logging.getLogger(__name__)
MAX_LINE_CHARS = 1_000_000


@dataclass(frozen=True)
class Utterance:
    """One validated manifest line."""

    audio_path: Path
    duration: float
    text: str  # normalised transcript
    tokens: tuple[int, ...]
    voice: str
    manifest: Path
    line: int


def _resolve_audio(value: Any, manifest: Path, line: int) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise DataError("audio_filepath must be a non-empty string", path=manifest, line=line, key="audio_filepath")
    if "\x00" in value:
        raise DataError("audio_filepath holds a NUL character", path=manifest, line=line, key="audio_filepath")
    raw = Path(value)
    if raw.is_absolute():
        return raw
    folder = manifest.parent.resolve()
    resolved = (folder / raw).resolve()
    if folder not in resolved.parents:
        raise DataError(
            f"relative path {value!r} leaves the manifest's folder {folder}; use a path inside it or an absolute one",
            path=manifest, line=line, key="audio_filepath",
        )
    return resolved


def _parse_line(
    record: Any, manifest: Path, line: int, normalizer: TextNormalizer, tokenizer: Tokenizer | None,
    max_audio_seconds: float,
) -> Utterance:
    if not isinstance(record, dict):
        raise DataError(f"expected a JSON object, got {type(record).__name__}", path=manifest, line=line)
    for key in ("audio_filepath", "text"):
        if key not in record:
            raise DataError(f"missing required key {key!r}", path=manifest, line=line, key=key)
    audio = _resolve_audio(record["audio_filepath"], manifest, line)
    text = record["text"]
    if not isinstance(text, str):
        raise DataError(f"text must be a string, got {type(text).__name__}", path=manifest, line=line, key="text")
    normalised = normalizer(text)
    if not normalised:
        raise DataError(f"empty transcript after normalisation ({text!r})", path=manifest, line=line, key="text")
    tokens: tuple[int, ...] = ()
    if tokenizer is not None:
        try:
            tokens = tuple(tokenizer.encode(normalised))
        except OutOfVocabularyError as err:
            raise DataError(f"{err} (normalised text {normalised!r})", path=manifest, line=line, key="text") from None
    if not audio.is_file():
        raise DataError(f"audio file {audio} not found", path=manifest, line=line, key="audio_filepath")
    try:
        frames, rate = audio_info(audio)
    except AudioReadError as err:
        raise DataError(f"{audio}: {err}", path=manifest, line=line, key="audio_filepath") from None
    if frames <= 0 or rate <= 0:
        raise DataError(f"{audio}: zero-length audio", path=manifest, line=line, key="audio_filepath")
    duration = record.get("duration", frames / rate)
    if isinstance(duration, bool) or not isinstance(duration, int | float) or not math.isfinite(duration):
        raise DataError(f"duration must be a finite number, got {duration!r}", path=manifest, line=line,
                        key="duration")
    if duration <= 0 or duration > max_audio_seconds or frames / rate > max_audio_seconds:
        raise DataError(
            f"duration {duration!r}s (file: {frames / rate:.2f}s) is outside (0, {max_audio_seconds}]s; split long "
            "recordings or raise data.max_audio_seconds", path=manifest, line=line, key="duration",
        )
    voice = record.get("voice", record.get("speaker", "unknown"))
    return Utterance(audio, float(frames / rate), normalised, tokens, str(voice), manifest, line)


def read_manifest(
    path: str | Path,
    normalizer: TextNormalizer | None = None,
    tokenizer: Tokenizer | None = None,
    *,
    max_audio_seconds: float = 600.0,
) -> list[Utterance]:
    """Read and validate a JSONL manifest (every line, every audio header).

    Args:
        path: The manifest.
        normalizer: Text normalisation; the tokenizer's when ``None`` and a tokenizer is given.
        tokenizer: When given, transcripts are encoded here so out-of-vocabulary characters fail early.
        max_audio_seconds: Longer audio is an error (the duration filter of training is separate).

    Raises:
        DataError: naming the manifest, the line and the key of the first bad line.
    """
    manifest = Path(path)
    normalizer = normalizer or (tokenizer.normalizer if tokenizer is not None else TextNormalizer())
    if not manifest.is_file():
        raise DataError("manifest not found", path=manifest)
    utterances: list[Utterance] = []
    with manifest.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if len(raw) > MAX_LINE_CHARS:
                raise DataError(f"line longer than {MAX_LINE_CHARS} bytes", path=manifest, line=number)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"not valid UTF-8 ({err.reason})", path=manifest, line=number) from None
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataError(f"malformed JSON ({err.msg} at column {err.colno})", path=manifest,
                                line=number) from None
            utterances.append(_parse_line(record, manifest, number, normalizer, tokenizer, max_audio_seconds))
    if not utterances:
        raise DataError("manifest holds no utterances", path=manifest)
    return utterances


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
            waveform = read_audio(utt.audio_path, self.sample_rate)
        except (AudioReadError, OSError) as err:
            raise DataError(f"{utt.audio_path}: {err}", path=utt.manifest, line=utt.line,
                            key="audio_filepath") from None
        return {
            "waveform": torch.from_numpy(np.ascontiguousarray(waveform)),
            "tokens": torch.tensor(utt.tokens, dtype=torch.long),
            "text": utt.text,
            "voice": utt.voice,
            "audio_filepath": str(utt.audio_path),
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
    }


class SpeechDataModule(TridentDataModule):
    """Manifests to padded batches, bucketed by duration; synthesises the default corpus when none is given.

    Args:
        data_dir: Folder of the embedded default corpus (used when ``train_manifest`` is ``None``).
        train_manifest: Training manifest (JSONL); ``None`` uses the default corpus.
        val_manifest: Validation manifest; required with ``train_manifest``.
        test_manifest: Test manifest; optional with ``train_manifest``.
        sample_rate: Rate the audio is resampled to (must match the model's).
        min_duration: Shorter training utterances are skipped.
        max_duration: Longer training utterances are skipped.
        max_audio_seconds: Audio longer than this in any manifest is an error.
        tokenizer: ``"char"`` or ``"bpe"`` (SentencePiece trained on the training transcripts).
        bpe_vocab_size: Pieces of the BPE model.
        lowercase: Fold transcripts to lower case (the character vocabulary follows).
        corpus_sentences: Distinct sentences of the synthesised default corpus.
        bucket_factor: Batches per length bucket of the training sampler.
        batch_size: Utterances per batch and device.
        num_workers: DataLoader workers.
        persistent_workers: Keep workers between epochs.
        pin_memory: Pin memory (``None``: when CUDA is available).
        seed: Seed of shuffling and of the synthesised corpus.
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
        num_workers: int = 0,
        persistent_workers: bool = True,
        pin_memory: bool | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, persistent_workers, pin_memory, seed)
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
        """The tokenizer as a dict (linked to ``model.tokenizer``; BPE is trained here on the training texts)."""
        normalizer = TextNormalizer(lowercase=self.lowercase)
        if self.tokenizer_kind == "char":
            from trident_audio.text import CharTokenizer

            return CharTokenizer(normalizer=normalizer.to_dict()).to_dict()
        return train_bpe(self.train_texts(), self.bpe_vocab_size, normalizer.to_dict()).to_dict()

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return tokenizer_from_dict(self.tokenizer_config)

    def train_texts(self) -> list[str]:
        """Normalised training transcripts (for the BPE model and the word language model)."""
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
            utterances = read_manifest(path, tokenizer=self.tokenizer, max_audio_seconds=self.max_audio_seconds)
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

    def val_dataloader(self) -> DataLoader[Any]:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader[Any]:
        return self._eval_loader("test")

