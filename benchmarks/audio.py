"""P5: ASR real-time factor from the artifact (onnxruntime) vs PyTorch eager, 5/10/30 s clips.

Trident: ``Transcriber.transcribe`` (the product path: chunking of audio longer than ``chunk_seconds``, greedy
CTC decoding). Baseline: the same Conformer-CTC in eager PyTorch under ``inference_mode`` on the whole clip,
with the same greedy decoding. RTF = processing time / audio duration.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.common import Row, Settings, interleave

COMMAND = "uv run python -m benchmarks --only P5"
TARGET_RTF = 0.004


def build_module(quick: bool):
    from trident_audio.model import ConformerEncoder, tiny_encoder
    from trident_audio.module import SpeechModule

    # the default recipe's encoder (configs/default.yaml): 6 layers, d=144, 80 mels
    net = tiny_encoder() if quick else ConformerEncoder(n_mels=80, d_model=144, num_heads=4, ffn_dim=576,
                                                        num_layers=6, kernel_size=15, dropout=0.1,
                                                        subsampling_channels=64)
    return SpeechModule(net=net, decoder="greedy").eval()


def run(settings: Settings) -> list[Row]:
    from trident_audio.decoding import greedy_decode
    from trident_audio.export import Transcriber
    from trident_core.export import export_artifact

    module = build_module(settings.quick)
    params = sum(p.numel() for p in module.parameters())
    artifact = settings.workdir / "P5" / "artifact"
    export_artifact(module.export_spec(), artifact, domain="audio")
    transcriber = Transcriber(artifact, decoder="greedy")
    spec = module.export_spec()
    eager_model = spec.model.eval()
    rate = 16000
    rng = np.random.default_rng(0)
    rows = []
    for seconds in settings.pick((5,), (5, 10, 30)):
        wave = (0.1 * rng.standard_normal(seconds * rate)).astype(np.float32)

        def onnx(wave: np.ndarray = wave) -> None:
            transcriber.transcribe([wave])

        def eager(wave: np.ndarray = wave) -> None:
            with torch.inference_mode():
                log_probs, lengths = eager_model(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
                transcriber.tokenizer.decode(greedy_decode(log_probs[0, : int(lengths[0])].numpy(),
                                                           blank=transcriber.tokenizer.blank))

        reps = settings.pick(1, 5)
        timed = interleave({"eager": eager, "onnx": onnx}, reps=reps, warmup=1)
        rtf_eager = timed["eager"]["median"] / seconds
        rtf_onnx = timed["onnx"]["median"] / seconds
        rows.append(Row(
            id="P5", compare=f"ASR real-time factor, {seconds} s clip ({params / 1e6:.2f}M-param Conformer-CTC)",
            baseline_name="PyTorch eager", baseline=round(rtf_eager, 5), trident=round(rtf_onnx, 5), unit="RTF",
            ratio=round(rtf_eager / rtf_onnx, 3), ratio_def="baseline / trident (higher is faster)",
            target=f"RTF <= {TARGET_RTF}", met=rtf_onnx <= TARGET_RTF, command=COMMAND,
            notes=f"greedy decoding in both; {reps} interleaved reps, median; Trident {1 / rtf_onnx:.0f}x real time; "
            f"peak RSS MiB eager {timed['eager']['rss_mb']} / onnxruntime {timed['onnx']['rss_mb']}",
            extra={"timings": timed, "params": params},
        ))
    return rows
