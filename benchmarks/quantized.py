"""Q8: the ``export --quantize int8`` artifact vs the float artifact vs PyTorch eager (nlp batch 32, audio 10 s).

The int8 artifact is written by the product path (:func:`trident_core.quantize.quantize_artifact`) with the
domain's own agreement check, whose figures are reported next to the speed: nlp on the default dataset's
validation split (intent agreement), audio on clips of the default corpus sentences spoken by espeak (WER points).
The weights are untrained (the P3 and P5 models: speed does not depend on them), so the agreement figures say how
much int8 moves these models' decisions, not how it affects a trained model's accuracy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks.common import Row, Settings, interleave, make_row, timed_arm

COMMAND = "uv run python -m benchmarks --only Q8"


def _row(compare: str, timed: dict, scale: float, unit: str, target: float | None, notes: str, what: dict) -> Row:
    floating, int8 = (timed[k]["median"] * scale for k in ("float", "int8"))
    return make_row("Q8", compare, timed_arm(timed, "eager", "PyTorch eager", scale, precision="fp32", **what),
                    timed_arm(timed, "int8", "int8 artifact (onnxruntime)", scale, precision="int8", **what), unit,
                    COMMAND, target=(">=", target) if target else None,
                    notes=f"float artifact {floating:.4g} {unit} (int8 {floating / int8:.2f}x of it); {notes}; "
                    "all arms in one process: each peak RSS holds the other arms' models too",
                    more_arms=(timed_arm(timed, "float", "float artifact (onnxruntime)", scale, precision="fp32",
                                         **what),))


def _nlp(settings: Settings) -> Row:
    from benchmarks.nlp_inference import _sdpa, build_intent
    from trident_core.export import export_artifact
    from trident_core.quantize import quantize_artifact
    from trident_nlp.export import IntentPredictor, quantize_check
    from trident_nlp.text import TextEncoder

    module, dm = build_intent(settings, "scratch" if settings.quick else "auto")
    folder = settings.workdir / "Q8"
    floating = export_artifact(module.export_spec(), folder / "nlp-float", domain="nlp").path
    validation = folder / "nlp-validation.jsonl"
    validation.write_text("".join(json.dumps({"text": r.text, "label": r.label}) + "\n"
                                  for r in dm.records["validation"]))
    # tolerance inf: the figures are reported whatever they are (the product refuses a missed contract)
    report = quantize_artifact(floating, folder / "nlp-int8", quantize_check, str(validation),
                               tolerance=float("inf")).metadata["quantization"]
    runners = {k: IntentPredictor.from_artifact(folder / f"nlp-{k}", threads=settings.threads)
               for k in ("float", "int8")}
    encoder, net = TextEncoder(dm.tokenizer_json, 64), _sdpa(module.net).eval()
    texts = [r.text for r in dm.records["test"]]
    n_batches = settings.pick(1, 4)
    batches = [texts[i * 32 : (i + 1) * 32] for i in range(n_batches)]

    def eager() -> None:
        with torch.inference_mode():
            for b in batches:
                ids, mask = encoder.pad(encoder.encode(b))
                net(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))

    def artifact(runner: IntentPredictor) -> Callable[[], Any]:
        return lambda: [runner.logits(b) for b in batches]

    arms: dict[str, Callable[[], Any]] = {"eager": eager, **{k: artifact(r) for k, r in runners.items()}}
    timed = interleave(arms, reps=3, warmup=1)
    return _row(f"NLP inference latency per batch, batch 32, int8 artifact ({dm.backbone})", timed, 1e3 / n_batches,
                "ms/batch", 2.0,
                f"agreement with the float artifact {report['agreement']:.4f} on {report['examples']} validation "
                f"texts (contract >= 0.99); accuracy float {report['float_accuracy']:.3f} / int8 "
                f"{report['int8_accuracy']:.3f} (untrained head); tokenization included; {n_batches} batches x "
                "3 interleaved reps, median", {"batch": 32, "threads": settings.threads,
                                                 "data": f"{n_batches} batches of the intent test split"})


def _speech_manifest(settings: Settings, count: int) -> str:
    from trident_audio.defaults import corpus_sentences, speak

    return speak(corpus_sentences(count, seed=1), settings.workdir / "Q8" / "speech")


def _audio(settings: Settings) -> Row:
    from benchmarks.audio import build_module
    from trident_audio.decoding import greedy_decode
    from trident_audio.export import Transcriber, quantize_check
    from trident_core.export import export_artifact
    from trident_core.quantize import quantize_artifact

    module = build_module(settings.quick)
    folder = settings.workdir / "Q8"
    floating = export_artifact(module.export_spec(), folder / "audio-float", domain="audio").path
    manifest = _speech_manifest(settings, settings.pick(4, 24))
    report = quantize_artifact(floating, folder / "audio-int8", quantize_check, manifest,
                               tolerance=float("inf")).metadata["quantization"]
    runners = {k: Transcriber(folder / f"audio-{k}", decoder="greedy") for k in ("float", "int8")}
    eager_model = module.export_spec().model.eval()
    seconds = 10
    wave = (0.1 * np.random.default_rng(0).standard_normal(seconds * 16000)).astype(np.float32)
    tokenizer = runners["float"].tokenizer

    def eager() -> None:
        with torch.inference_mode():
            log_probs, lengths = eager_model(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
            tokenizer.decode(greedy_decode(log_probs[0, : int(lengths[0])].numpy(), blank=tokenizer.blank))

    def artifact(runner: Transcriber) -> Callable[[], Any]:
        return lambda: runner.transcribe([wave])

    arms: dict[str, Callable[[], Any]] = {"eager": eager, **{k: artifact(r) for k, r in runners.items()}}
    timed = interleave(arms, reps=settings.pick(3, 5), warmup=1)
    return _row(f"ASR real-time factor, {seconds} s clip, int8 artifact (P5 Conformer-CTC)", timed, 1 / seconds,
                "RTF", None,
                f"WER float {report['float_wer']:.1f} / int8 {report['int8_wer']:.1f} on {report['examples']} "
                f"espeak clips: difference {report['difference']:+.2f} points (contract <= 0.5; untrained model, "
                f"so both WERs are near 100); greedy decoding in all arms; {settings.pick(3, 5)} interleaved reps, "
                "median", {"batch": 1, "threads": settings.threads, "data": f"one {seconds} s clip of noise"})


def run(settings: Settings) -> list[Row]:
    return [_nlp(settings), _audio(settings)]
