"""Artifact-based inference: audio files, folders or manifests to JSONL transcripts, on onnxruntime.

Export itself is the core's (``SpeechModule.export_spec`` says what to export). Here the artifact's
metadata gives the sample rate, the tokenizer and the decoder settings; audio longer than
``chunk_seconds`` is cut at quiet points into chunks that are transcribed separately and joined.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from trident_audio.decoding import WordNgramLM, greedy_decode, prefix_beam_search
from trident_audio.text import tokenizer_from_dict
from trident_audio.transforms import AudioReadError, read_audio
from trident_core.artifact import Artifact, load_artifact
from trident_core.errors import ConfigError, DataError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".mp3")


def list_inputs(source: str | Path) -> list[Path]:
    """Audio files named by ``source``: one file, every audio file under a folder, or a manifest's files.

    Raises:
        DataError: when the input does not exist, holds no audio, or a manifest line is malformed.
    """
    path = Path(source)
    if not path.exists():
        raise DataError("input not found; pass an audio file, a folder of audio files or a JSONL manifest",
                        path=path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder", path=path)
        return files
    if path.suffix.lower() in (".jsonl", ".json"):
        return _manifest_files(path)
    return [path]


def _manifest_files(manifest: Path) -> list[Path]:
    files = []
    folder = manifest.parent.resolve()
    for number, raw in enumerate(manifest.read_bytes().splitlines(), start=1):
        try:
            text = raw.decode("utf-8")
            record = json.loads(text) if text.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"malformed line ({type(err).__name__})", path=manifest, line=number) from None
        if record is None:
            continue
        value = record.get("audio_filepath") if isinstance(record, dict) else None
        if not isinstance(value, str) or not value:
            raise DataError("needs a string audio_filepath", path=manifest, line=number, key="audio_filepath")
        target = Path(value) if Path(value).is_absolute() else (folder / value).resolve()
        if not Path(value).is_absolute() and folder not in target.parents:
            raise DataError(f"relative path {value!r} leaves the manifest's folder", path=manifest, line=number,
                            key="audio_filepath")
        files.append(target)
    if not files:
        raise DataError("manifest holds no audio_filepath", path=manifest)
    return files


def split_long(samples: np.ndarray, sample_rate: int, chunk_seconds: float) -> list[np.ndarray]:
    """Cut audio longer than ``chunk_seconds`` into chunks, each cut at the quietest 20 ms of its last quarter."""
    limit = max(int(chunk_seconds * sample_rate), sample_rate)
    chunks: list[np.ndarray] = []
    start = 0
    frame = max(1, sample_rate // 50)
    while len(samples) - start > limit:
        lo = start + limit * 3 // 4
        window = samples[lo : start + limit]
        usable = len(window) // frame * frame
        energy = (window[:usable].reshape(-1, frame) ** 2).mean(axis=1)
        cut = lo + int(energy.argmin()) * frame + frame // 2
        chunks.append(samples[start:cut])
        start = cut
    chunks.append(samples[start:])
    return chunks


class Transcriber:
    """Runs an artifact: audio in, normalised transcripts out.

    Args:
        artifact: Artifact folder (or an opened :class:`Artifact`).
        decoder: ``"greedy"`` or ``"beam"``; default the one recorded at export.
        beam_size: Beam width; default the one recorded at export.
        lm_weight: LM weight for beam search; default the one recorded at export.
    """

    def __init__(self, artifact: str | Path | Artifact, decoder: str | None = None, beam_size: int | None = None,
                 lm_weight: float | None = None) -> None:
        self.artifact = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
        meta = self.artifact.domain_metadata
        self.sample_rate = int(meta["sample_rate"])
        self.tokenizer = tokenizer_from_dict(json.loads(self.artifact.file(meta["tokenizer_file"]).read_text()))
        self.decoder = decoder or meta.get("decoder", "greedy")
        if self.decoder not in ("greedy", "beam"):
            raise ConfigError(f"decoder must be 'greedy' or 'beam', got {self.decoder!r}")
        self.beam_size = beam_size or int(meta.get("beam_size", 8))
        self.lm_weight = float(meta.get("lm_weight", 0.5) if lm_weight is None else lm_weight)
        self.word_bonus = float(meta.get("word_bonus", 0.0))
        self.chunk_seconds = float(meta.get("chunk_seconds", 20.0))
        lm_file = meta.get("lm_file")
        self.lm = WordNgramLM.from_dict(json.loads(self.artifact.file(lm_file).read_text())) if lm_file else None

    def log_probs(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """Per-utterance ``(frames, vocab)`` log-probabilities of mono float32 waveforms (one padded batch)."""
        lengths = np.array([len(w) for w in waves], dtype=np.int64)
        batch = np.zeros((len(waves), int(lengths.max())), dtype=np.float32)
        for row, wave in enumerate(waves):
            batch[row, : len(wave)] = wave
        out = self.artifact.run({"waveform": batch, "lengths": lengths})
        return [lp[:n] for lp, n in zip(out["log_probs"], out["output_lengths"], strict=True)]

    def decode(self, log_probs: np.ndarray) -> str:
        if self.decoder == "beam":
            ids = prefix_beam_search(log_probs, self.tokenizer.tokens, blank=self.tokenizer.blank,
                                     beam_size=self.beam_size, lm=self.lm, lm_weight=self.lm_weight,
                                     word_bonus=self.word_bonus if self.lm is not None else 0.0)
        else:
            ids = greedy_decode(log_probs, blank=self.tokenizer.blank)
        return self.tokenizer.decode(ids)

    def transcribe(self, waves: list[np.ndarray], batch_size: int = 16) -> list[str]:
        """Transcripts of mono waveforms at the model's rate; long ones are chunked, batches sorted by length."""
        if batch_size < 1:
            raise ConfigError(f"--batch_size must be >= 1, got {batch_size}")
        jobs = [(i, chunk) for i, w in enumerate(waves) for chunk in split_long(w, self.sample_rate,
                                                                                self.chunk_seconds)]
        order = sorted(range(len(jobs)), key=lambda j: len(jobs[j][1]))
        texts: list[str] = [""] * len(jobs)
        for start in range(0, len(order), batch_size):
            picked = order[start : start + batch_size]
            for j, lp in zip(picked, self.log_probs([jobs[j][1] for j in picked]), strict=True):
                texts[j] = self.decode(lp)
        joined: list[list[str]] = [[] for _ in waves]
        for (i, _), text in zip(jobs, texts, strict=True):
            if text:
                joined[i].append(text)
        return [" ".join(parts) for parts in joined]

    def read(self, path: Path) -> np.ndarray:
        try:
            return read_audio(path, self.sample_rate)
        except AudioReadError as err:
            raise DataError(str(err), path=path) from None


def infer(
    artifact: str, input: str, output: str | None = None, batch_size: int = 16, *, decoder: str | None = None
) -> list[dict[str, Any]]:
    """Transcribe ``input`` (audio file, folder or JSONL manifest) with an artifact on onnxruntime.

    Returns:
        One ``{"audio_filepath", "text"}`` row per file, in input order; also written as JSONL to ``output``
        (a file, or ``transcripts.jsonl`` inside a folder) when given.
    """
    transcriber = Transcriber(artifact, decoder=decoder)
    files = list_inputs(input)
    rows: list[dict[str, Any]] = []
    # bounded memory: read and transcribe a window of files at a time
    window = max(batch_size * 8, 64)
    for start in range(0, len(files), window):
        part = files[start : start + window]
        texts = transcriber.transcribe([transcriber.read(p) for p in part], batch_size)
        rows += [{"audio_filepath": str(p), "text": t} for p, t in zip(part, texts, strict=True)]
    if output is not None:
        target = Path(output)
        if target.is_dir() or output.endswith(("/", "\\")):
            target = target / "transcripts.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        tmp.replace(target)
    return rows
