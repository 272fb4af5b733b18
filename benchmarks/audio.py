"""P5: ASR real-time factor from the artifact (onnxruntime) vs PyTorch eager, 5/10/30 s clips, and with beam + LM.

Trident: ``Transcriber.transcribe`` (the product path: chunking of audio longer than ``chunk_seconds``, then the
decoder recorded in the artifact). Baseline: the same Conformer-CTC in eager PyTorch under ``inference_mode`` on
the whole clip, then the same decoder. Greedy rows (5/10/30 s) and one row per clip length with the default
recipe's decoding (prefix beam search, beam 8, word bigram LM of the corpus sentences, LM weight 0.5). Every arm
runs in its own process (:func:`benchmarks.common.isolated_interleave`), so each has its own peak RSS.
RTF = processing time / audio duration.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmarks.common import Row, Settings, isolated_interleave, make_row, timed_arm

COMMAND = "uv run python -m benchmarks --only P5"
TARGET_RTF = 0.004
RATE = 16000


def build_module(quick: bool, decoder: str = "greedy", lm_texts: list[str] | None = None):
    from trident_audio.model import ConformerEncoder, tiny_encoder
    from trident_audio.module import SpeechModule

    # the default recipe's encoder (configs/default.yaml): 6 layers, d=144, 80 mels
    net = tiny_encoder() if quick else ConformerEncoder(n_mels=80, d_model=144, num_heads=4, ffn_dim=576,
                                                        num_layers=6, kernel_size=15, dropout=0.1,
                                                        subsampling_channels=64)
    return SpeechModule(net=net, decoder=decoder, lm_texts=lm_texts, beam_size=8, lm_order=2,
                        lm_weight=0.5).eval()


def _wave(seconds: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seconds).standard_normal(seconds * RATE)).astype(np.float32)


def eager_arm(bundle: str, seconds: int) -> Any:
    """The eager arm in its own process: the model, tokenizer and LM saved by :func:`run`, the same decoder."""
    from trident_audio.export import decode_ctc

    saved = torch.load(bundle, weights_only=False)
    model, tokenizer, wave = saved["model"].eval(), saved["tokenizer"], _wave(seconds)

    def eager() -> None:
        with torch.inference_mode():
            log_probs, lengths = model(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
        decode_ctc(log_probs[0, : int(lengths[0])].numpy(), tokenizer, decoder=saved["decoder"], beam_size=8,
                   lm=saved["lm"], lm_weight=0.5, word_bonus=saved["word_bonus"])

    return eager


def onnx_arm(artifact: str, seconds: int) -> Any:
    from trident_audio.export import Transcriber

    transcriber, wave = Transcriber(artifact), _wave(seconds)
    return lambda: transcriber.transcribe([wave])


def run(settings: Settings) -> list[Row]:
    from trident_audio.defaults import corpus_sentences
    from trident_core.export import export_artifact

    rows = []
    reps = settings.pick(3, 5)
    for decoder in ("greedy", "beam"):
        module = build_module(settings.quick, decoder, corpus_sentences(settings.pick(20, 200)))
        if decoder == "greedy":
            module.lm = None
        params = sum(p.numel() for p in module.parameters())
        folder = settings.workdir / "P5" / decoder
        export_artifact(module.export_spec(), folder / "artifact", domain="audio")
        bundle = folder / "eager.pt"
        torch.save({"model": module.export_spec().model.eval(), "tokenizer": module.tokenizer, "lm": module.lm,
                    "decoder": decoder, "word_bonus": module.word_bonus}, bundle)
        label = "greedy CTC" if decoder == "greedy" else "beam 8 + word bigram LM (the default decoding)"
        for seconds in settings.pick((5,), (5, 10, 30) if decoder == "greedy" else (10,)):
            timed = isolated_interleave({
                "eager": ("benchmarks.audio:eager_arm", {"bundle": str(bundle), "seconds": seconds}),
                "onnx": ("benchmarks.audio:onnx_arm", {"artifact": str(folder / "artifact"), "seconds": seconds}),
            }, reps=reps, warmup=1, threads=settings.threads)
            what: dict[str, Any] = {"precision": "fp32", "batch": 1, "threads": settings.threads,
                    "data": f"one {seconds} s clip of noise, {label}"}
            rows.append(make_row(
                "P5", f"ASR real-time factor, {seconds} s clip, {label} ({params / 1e6:.2f}M-param Conformer-CTC)",
                timed_arm(timed, "eager", "PyTorch eager, whole clip", 1 / seconds, **what),
                timed_arm(timed, "onnx", "Transcriber (artifact, chunked)", 1 / seconds, **what), "RTF", COMMAND,
                target=("<=", TARGET_RTF) if decoder == "greedy" else None, target_on="trident",
                target_text=f"Trident RTF <= {TARGET_RTF}" if decoder == "greedy" else None,
                notes=f"{reps} interleaved reps after 1 warm-up, each arm in its own process; the decoder's own time "
                "is in both arms",
            ))
    return rows
