"""Both halves of the speech artifact: what export writes and how inference reads and runs it.

:func:`export_spec` says what to export (the core writes the folder); :class:`SpeechMetadata` is the one shape of
``domain_metadata``, written there and read back by :class:`Transcriber`; :func:`decode_ctc` is the one CTC
decode rule, called by the module's test step and by artifact inference alike. Audio longer than
``chunk_seconds`` runs as overlapping windows (:func:`plan_chunks`) whose log-probabilities are cut at quiet points
inside the overlaps and joined (:func:`stitch`) before one decode of the whole recording.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from trident_audio.arpa import ArpaLM, lm_from_dict
from trident_audio.chunks import plan_chunks, stitch
from trident_audio.decoding import WordNgramLM, greedy_decode, prefix_beam_search
from trident_audio.infer_options import DECODERS, check_decoder, decoding_overrides
from trident_audio.manifest import manifest_records, resolve_audio_path, segment
from trident_audio.text import Tokenizer, tokenizer_from_dict
from trident_audio.waveform import AudioReadError, read_audio
from trident_core.artifact import Artifact, load_artifact
from trident_core.errors import ArtifactError, ConfigError, DataError
from trident_core.metadata import DomainMetadata
from trident_core.output import write_jsonl

if TYPE_CHECKING:

    from trident_audio.model import ConformerEncoder
    from trident_audio.module import SpeechModule
    from trident_core.export import ExportSpec

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".mp3")
INFER_BATCH_SIZE = 16  # utterances (or chunks) per onnxruntime call, the default of `infer --batch_size`
TOKENIZER_FILE = "tokenizer.json"
LM_FILE = "lm.json"


@dataclasses.dataclass(frozen=True)
class SpeechMetadata(DomainMetadata):
    """``domain_metadata`` of a speech artifact: everything inference needs from training, declared once.

    Attributes:
        sample_rate: Rate the graph's features are built for; inference resamples every file to it.
        features: The feature front end inside the graph (``kind``, ``sample_rate``, ``n_fft``, ``hop_length``,
            ``n_mels``); its ``sample_rate`` must equal :attr:`sample_rate`.
        tokens: Token strings by id (for the beam search's word boundaries).
        blank: Id of the CTC blank.
        tokenizer_file: Artifact file of the tokenizer (normaliser settings, characters or the BPE model).
        lm_file: Artifact file of the word n-gram LM; ``None`` without one.
        decoder: ``"greedy"`` or ``"beam"``.
        beam_size: Beam width of the prefix beam search.
        lm_weight: LM weight in beam search.
        word_bonus: Score added per word in beam search with an LM.
        chunk_seconds: Longer audio is cut into chunks of at most this many seconds.
        chunk_overlap: Seconds each chunk overlaps the next (:func:`plan_chunks`); artifacts written before it
            existed read as the default.
    """

    TASK: ClassVar[str] = "speech_recognition"
    sample_rate: int
    features: dict[str, Any]
    tokens: list[str]
    blank: int
    tokenizer_file: str
    lm_file: str | None
    decoder: str
    beam_size: int
    lm_weight: float
    word_bonus: float
    chunk_seconds: float
    chunk_overlap: float = 2.0

    @classmethod
    def from_dict(cls, raw: Any, source: str | Path = "metadata.json") -> Self:
        """:meth:`DomainMetadata.from_dict`, then the checks a hand-edited or foreign artifact could fail.

        Raises:
            ArtifactError: also when the sample rate disagrees with the feature front end, or the decoder is unknown.
        """
        meta = super().from_dict(raw, source)
        front = meta.features.get("sample_rate") if isinstance(meta.features, dict) else None
        if front != meta.sample_rate:
            raise ArtifactError(
                f"{source}: [domain_metadata.sample_rate] {meta.sample_rate} Hz disagrees with the feature front "
                f"end's [domain_metadata.features.sample_rate] {front}; audio resampled to it would not be what the "
                "model was trained on. Re-export the checkpoint instead of editing metadata.json"
            )
        if meta.decoder not in DECODERS:
            raise ArtifactError(f"{source}: [domain_metadata.decoder] {meta.decoder!r} is not one of {DECODERS}")
        return meta


def decode_ctc(
    log_probs: np.ndarray,
    tokenizer: Tokenizer,
    *,
    length: int | None = None,
    decoder: str = "greedy",
    beam_size: int = 8,
    lm: WordNgramLM | ArpaLM | None = None,
    lm_weight: float = 0.5,
    word_bonus: float = 0.0,
) -> str:
    """The one CTC decode rule: ``(frames, vocab)`` log-probabilities of one utterance to its normalised text.

    Called by ``SpeechModule.transcribe`` (validation and test) and by :class:`Transcriber` (the artifact), so a
    model is scored exactly as it is served.

    Args:
        log_probs: Log-probabilities of one utterance.
        tokenizer: Maps ids back to text.
        length: Valid frames (the rest is padding); all when ``None``.
        decoder: ``"greedy"`` (best path), ``"beam"`` (prefix beam search, with ``lm`` when given) or
            ``"flashlight"`` (torchaudio's ``ctc_decoder`` with the ARPA ``lm``; :mod:`trident_audio.flashlight`).
        beam_size: Beam width.
        lm: Optional word n-gram LM for the beam search.
        lm_weight: Weight of the LM log-probability.
        word_bonus: Added per completed word when an LM is used.
    """
    if check_decoder(decoder, "decoder") == "flashlight":
        from trident_audio.flashlight import flashlight_decoder

        return flashlight_decoder(list(tokenizer.tokens), tokenizer.blank, lm, beam_size, lm_weight,
                                  word_bonus)(log_probs, length)
    if decoder == "beam":
        ids = prefix_beam_search(log_probs, tokenizer.tokens, length=length, blank=tokenizer.blank,
                                 beam_size=beam_size, lm=lm, lm_weight=lm_weight, word_bonus=word_bonus)
    else:
        ids = greedy_decode(log_probs, length, tokenizer.blank)
    return tokenizer.decode(ids)


def word_timestamps(
    log_probs: np.ndarray, text: str, tokenizer: Tokenizer, seconds_per_frame: float, offset: float = 0.0
) -> list[dict[str, Any]]:
    """Word times of a decoded transcript: its tokens force-aligned to the CTC posteriors (torchaudio
    ``forced_align`` + ``merge_tokens``), grouped into words at spaces (characters) or ``▁`` (BPE pieces).

    Args:
        log_probs: ``(frames, vocab)`` log-probabilities of the audio ``text`` was decoded from.
        text: The normalised transcript (greedy or beam), re-encoded with ``tokenizer``.
        tokenizer: The model's tokenizer.
        seconds_per_frame: Duration of one output frame.
        offset: Added to every time (the chunk's start in its recording).

    Returns:
        ``[{"word", "start", "end"}]`` in seconds, in order; empty when there is nothing to align (or the audio has
        fewer frames than CTC needs for the text).
    """
    import torch
    import torchaudio.functional as F

    ids = tokenizer.encode(text) if text else []
    repeats = sum(a == b for a, b in itertools.pairwise(ids))
    if not ids or len(ids) + repeats > len(log_probs):
        return []
    emission = torch.from_numpy(np.ascontiguousarray(log_probs, dtype=np.float32))[None]
    aligned, scores = F.forced_align(emission, torch.tensor([ids], dtype=torch.int32), blank=tokenizer.blank)
    words: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for span in F.merge_tokens(aligned[0], scores[0].exp(), blank=tokenizer.blank):
        piece = tokenizer.tokens[span.token].replace("\u2581", " ")
        if piece.startswith(" ") and current is not None:
            words.append(current)
            current = None
        if body := piece.strip():
            if current is None:
                current = {"word": "", "start": span.start, "end": span.end}
            current["word"] += body
            current["end"] = span.end
    if current is not None:
        words.append(current)
    return [{"word": w["word"], "start": round(offset + w["start"] * seconds_per_frame, 3),
             "end": round(offset + w["end"] * seconds_per_frame, 3)} for w in words]


def front_end(net: ConformerEncoder) -> dict[str, Any]:
    """Describe the feature front end of ``net`` (for the metadata), checking it runs at ``net.sample_rate``.

    Raises:
        ConfigError: when the front end was built for another rate than the one the net declares.
    """
    features = net.features
    rate = int(getattr(features, "sample_rate", net.sample_rate))
    if rate != int(net.sample_rate):
        raise ConfigError(
            f"model.net declares sample_rate {net.sample_rate} but its feature front end is built for {rate} Hz; "
            "build both from one value (ConformerEncoder(sample_rate=...) does)"
        )
    described = {"kind": type(features).__name__, "sample_rate": rate}
    for name in ("n_fft", "hop_length", "n_mels"):
        if hasattr(features, name):
            described[name] = int(getattr(features, name))
    return described


def export_spec(module: SpeechModule) -> ExportSpec:
    """Waveform in, log-probabilities out (features inside the graph); tokenizer and LM travel as files."""
    import torch

    from trident_audio.model import CTCModel
    from trident_core.export import ExportSpec

    encoder = copy.deepcopy(module.net).float().cpu().eval()
    model = CTCModel(encoder, head=copy.deepcopy(module.head).float().cpu()).eval()
    rate = int(module.net.sample_rate)
    gen = torch.Generator().manual_seed(0)
    examples = [
        (0.1 * torch.randn(2, rate, generator=gen), torch.tensor([rate, rate * 2 // 3])),
        (0.1 * torch.randn(3, rate * 3 // 2, generator=gen), torch.tensor([rate * 3 // 2, rate, rate // 2])),
    ]
    files: dict[str, str | bytes] = {TOKENIZER_FILE: json.dumps(module.tokenizer.to_dict()).encode()}
    if module.lm is not None:
        files[LM_FILE] = json.dumps(module.lm.to_dict()).encode()
    metadata = SpeechMetadata(
        sample_rate=rate, features=front_end(module.net), tokens=list(module.tokenizer.tokens),
        blank=module.tokenizer.blank, tokenizer_file=TOKENIZER_FILE,
        lm_file=LM_FILE if module.lm is not None else None, decoder=module.decoder, beam_size=module.beam_size,
        lm_weight=module.lm_weight, word_bonus=module.word_bonus, chunk_seconds=module.chunk_seconds,
        chunk_overlap=module.chunk_overlap,
    )
    return ExportSpec(
        model=model,
        example_inputs=examples,
        input_names=["waveform", "lengths"],
        output_names=["log_probs", "output_lengths"],
        dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
                      "log_probs": {0: "batch", 1: "frames"}, "output_lengths": {0: "batch"}},
        metadata=metadata.to_dict(),
        files=files,
    )


@dataclasses.dataclass(frozen=True)
class InferInput:
    """One thing to transcribe: a file, or the segment a manifest line names, and that line's other keys."""

    path: Path
    start: int = 0  # first frame at the file's rate
    frames: int = -1  # -1: to the end of the file
    record: dict[str, Any] = dataclasses.field(default_factory=dict)


def list_inputs(source: str | Path, sample_rate: int | None = None) -> list[InferInput]:
    """What ``source`` names: one file, every audio file under a folder, or a manifest's files (or segments).

    A manifest line's ``offset``/``duration`` select a segment by the training rule
    (:func:`trident_audio.manifest.segment`), so a NeMo manifest of long recordings is transcribed segment by segment;
    with ``sample_rate`` a manifest line whose file has a rate the model cannot take is refused naming the line.

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
        return [InferInput(f) for f in files]
    if path.suffix.lower() in (".jsonl", ".json"):
        inputs = []
        for line, record in manifest_records(path):
            audio = resolve_audio_path(record.get("audio_filepath"), path, line)
            start, frames, _ = segment(record, audio, path, line, float("inf"), sample_rate)
            inputs.append(InferInput(audio, start, frames, record))
        if not inputs:
            raise DataError("manifest holds no audio_filepath", path=path)
        return inputs
    return [InferInput(path)]


class Transcriber:
    """Runs an artifact: audio in, normalised transcripts out.

    Args:
        artifact: Artifact folder (or an opened :class:`Artifact`).
        decoder: ``"greedy"``, ``"beam"`` or ``"flashlight"``; default the one recorded at export.
        beam_size: Beam width; default the one recorded at export.
        lm_weight: LM weight (beam, flashlight); default the one recorded at export.
        word_bonus: Score per word with an LM (flashlight's ``word_score``); default the one recorded at export.

    Raises:
        ConfigError: a setting the artifact cannot honour (:func:`~trident_audio.infer_options.decoding_overrides`).
    """

    def __init__(self, artifact: str | Path | Artifact, decoder: str | None = None, beam_size: int | None = None,
                 lm_weight: float | None = None, word_bonus: float | None = None) -> None:
        self.artifact = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
        meta = SpeechMetadata.from_artifact(self.artifact)
        self.sample_rate = meta.sample_rate
        self.tokenizer = tokenizer_from_dict(json.loads(self.artifact.file(meta.tokenizer_file).read_text()))
        lm_file = meta.lm_file
        self.lm = lm_from_dict(json.loads(self.artifact.file(lm_file).read_text())) if lm_file else None
        self.metadata = dataclasses.replace(meta, **decoding_overrides(
            meta.decoder, self.lm, str(self.artifact.path), decoder, beam_size=beam_size, lm_weight=lm_weight,
            word_bonus=word_bonus))
        if self.metadata.decoder == "flashlight":  # a tokenizer it cannot take fails now, not at the first file
            self.decode(np.zeros((1, self.tokenizer.vocab_size), dtype=np.float32))

    def log_probs(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """Per-utterance ``(frames, vocab)`` log-probabilities of mono float32 waveforms (one padded batch)."""
        lengths = np.array([len(w) for w in waves], dtype=np.int64)
        batch = np.zeros((len(waves), int(lengths.max())), dtype=np.float32)
        for row, wave in enumerate(waves):
            batch[row, : len(wave)] = wave
        out = self.artifact.run({"waveform": batch, "lengths": lengths})
        return [lp[:n] for lp, n in zip(out["log_probs"], out["output_lengths"], strict=True)]

    def decode(self, log_probs: np.ndarray) -> str:
        """:func:`decode_ctc` with the artifact's settings."""
        meta = self.metadata
        return decode_ctc(log_probs, self.tokenizer, decoder=meta.decoder, beam_size=meta.beam_size, lm=self.lm,
                          lm_weight=meta.lm_weight, word_bonus=meta.word_bonus)

    def transcribe(self, waves: list[np.ndarray], batch_size: int = INFER_BATCH_SIZE) -> list[str]:
        """Transcripts of mono waveforms at the model's rate; long ones are chunked, batches sorted by length.

        No word times, so no torch (``trident serve`` calls this).
        """
        return [text for text, _ in self.transcribe_words(waves, batch_size, words=False)]

    def transcribe_words(
        self, waves: list[np.ndarray], batch_size: int = INFER_BATCH_SIZE, *, words: bool = True
    ) -> list[tuple[str, list[dict[str, Any]]]]:
        """:meth:`transcribe`, with each transcript's word times (:func:`word_timestamps`, seconds from the start
        of its waveform; torchaudio's forced aligner, so torch is imported); empty lists when ``words`` is False."""
        if batch_size < 1:
            raise ConfigError(f"--batch_size must be >= 1, got {batch_size}")
        meta = self.metadata
        plans = [plan_chunks(w, self.sample_rate, meta.chunk_seconds, meta.chunk_overlap) for w in waves]
        jobs = [(i, k) for i, plan in enumerate(plans) for k in range(len(plan))]
        pieces = [waves[i][plans[i][k].start : plans[i][k].end] for i, k in jobs]
        order = sorted(range(len(jobs)), key=lambda j: len(pieces[j]))
        outputs: list[np.ndarray] = [np.empty(0)] * len(jobs)
        for first in range(0, len(order), batch_size):
            picked = order[first : first + batch_size]
            for j, lp in zip(picked, self.log_probs([pieces[j] for j in picked]), strict=True):
                outputs[j] = lp
        results = []
        for i, plan in enumerate(plans):  # one decode per recording, over its stitched frames
            lp = stitch(plan, [outputs[j] for j, (w, _) in enumerate(jobs) if w == i])
            text = self.decode(lp)
            seconds = len(waves[i]) / self.sample_rate
            times = word_timestamps(lp, text, self.tokenizer, seconds / max(len(lp), 1)) if words else []
            results.append((text, times))
        return results

    def read(self, path: Path, start: int = 0, frames: int = -1) -> np.ndarray:
        """Mono float32 audio of ``path`` (or of its segment) resampled to the artifact's rate; a DataError naming
        the file if not."""
        try:
            return read_audio(path, self.sample_rate, start, frames)
        except AudioReadError as err:
            raise DataError(str(err), path=path) from None


def infer(
    artifact: str, input: str, output: str | None = None, batch_size: int = INFER_BATCH_SIZE, *,
    decoder: str | None = None, beam_size: int | None = None, lm_weight: float | None = None,
    word_bonus: float | None = None,
) -> list[dict[str, Any]]:
    """Transcribe ``input`` (audio file, folder or JSONL manifest) with an artifact on onnxruntime.

    ``decoder``, ``beam_size``, ``lm_weight``, ``word_bonus`` (``infer --decoder ...``) override the artifact's
    settings for this run; ``None``: as it stored them.

    Returns:
        One row per file or manifest line, in input order, NeMo's shape: the transcript under ``pred_text``, the
        decoder that produced it under ``decoder``, its
        word times under ``words`` (``[{"word", "start", "end"}]``, seconds from the start of the file or segment), the
        resolved ``audio_filepath``, and a manifest line's other keys (its reference ``text``, ``offset``,
        ``duration``...) kept as they were; also written as JSONL to ``output`` (a file, or ``transcripts.jsonl``
        inside a folder) when given.
    """
    transcriber = Transcriber(artifact, decoder, beam_size, lm_weight, word_bonus)
    inputs = list_inputs(input, transcriber.sample_rate)
    rows: list[dict[str, Any]] = []
    # bounded memory: read and transcribe a window of files at a time
    window = max(batch_size * 8, 64)
    for start in range(0, len(inputs), window):
        part = inputs[start : start + window]
        results = transcriber.transcribe_words([transcriber.read(i.path, i.start, i.frames) for i in part],
                                               batch_size)
        rows += [{**i.record, "audio_filepath": str(i.path), "pred_text": text,
                  "decoder": transcriber.metadata.decoder, "words": words}
                 for i, (text, words) in zip(part, results, strict=True)]
    if output is not None:
        write_jsonl(rows, output, "transcripts.jsonl")
    return rows


QUANTIZE_TOLERANCE = 0.5  # WER points the int8 artifact may lose against the float one


def quantize_check(float_artifact: str, int8_artifact: str, validation: str) -> dict[str, Any]:
    """``export --quantize int8``'s contract for speech: the WER (in points, against the manifest's normalised
    ``text``) of the int8 artifact minus the float one's, on the validation manifest."""
    from trident_audio.module import word_errors

    inputs = list_inputs(validation)
    if any(not isinstance(i.record.get("text"), str) for i in inputs):
        raise DataError("every line needs its reference text under 'text' to measure WER", path=validation)
    wer: dict[str, float] = {}
    for name, path in (("float", float_artifact), ("int8", int8_artifact)):
        transcriber = Transcriber(path)
        hyps = transcriber.transcribe([transcriber.read(i.path, i.start, i.frames) for i in inputs])
        refs = [transcriber.tokenizer.normalizer(i.record["text"]) for i in inputs]
        errors = sum(word_errors(ref, hyp) for ref, hyp in zip(refs, hyps, strict=True))
        wer[name] = 100.0 * errors / max(1, sum(len(ref.split()) for ref in refs))
    return {"metric": "WER points", "examples": len(inputs), "float_wer": wer["float"], "int8_wer": wer["int8"],
            "difference": wer["int8"] - wer["float"], "tolerance": QUANTIZE_TOLERANCE}
