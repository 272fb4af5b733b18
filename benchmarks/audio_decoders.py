"""Decoder speed and WER on one artifact and one manifest: greedy, the own prefix beam search, flashlight (report only).

    uv run python benchmarks/audio_decoders.py ARTIFACT MANIFEST.jsonl LM [--beam-size 8] [--lm-weight 0.5]
        [--word-bonus 1.0] [--order 3]

``LM`` is an ARPA file, or a text corpus (one sentence per line) built into a Kneser-Ney model of ``--order``.
The artifact's log-probabilities of every manifest line (long lines stitched as ``infer`` does) are computed once;
each decoder then decodes all of them with the same LM and weights. Prints one JSON row per decoder: WER against
the manifest's ``text``, decode seconds, and seconds per second of audio.
"""

from __future__ import annotations

import argparse
import json
import time

from trident_audio.arpa import read_arpa
from trident_audio.chunks import plan_chunks, stitch
from trident_audio.export import Transcriber, decode_ctc, list_inputs
from trident_audio.flashlight import available
from trident_audio.module import word_errors
from trident_audio.textlm import read_lm_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact")
    parser.add_argument("manifest")
    parser.add_argument("lm")
    parser.add_argument("--beam-size", type=int, default=8)
    parser.add_argument("--lm-weight", type=float, default=0.5)
    parser.add_argument("--word-bonus", type=float, default=1.0)
    parser.add_argument("--order", type=int, default=3)
    args = parser.parse_args()

    transcriber = Transcriber(args.artifact, decoder="greedy")
    tokenizer = transcriber.tokenizer
    lm = read_arpa(args.lm) if args.lm.endswith(".arpa") else read_lm_text(args.lm, tokenizer.normalizer, args.order)
    rate, meta = transcriber.sample_rate, transcriber.metadata
    inputs = list_inputs(args.manifest, rate)
    refs = [tokenizer.normalizer(str(i.record.get("text", ""))) for i in inputs]
    log_probs, seconds = [], 0.0
    for item in inputs:
        wave = transcriber.read(item.path, item.start, item.frames)
        seconds += len(wave) / rate
        plan = plan_chunks(wave, rate, meta.chunk_seconds, meta.chunk_overlap)
        log_probs.append(stitch(plan, transcriber.log_probs([wave[c.start : c.end] for c in plan])))
    words = sum(len(r.split()) for r in refs)
    decoders = ["greedy", "beam", *(["flashlight"] if available() else [])]
    for decoder in decoders:
        start = time.perf_counter()
        hyps = [decode_ctc(lp, tokenizer, decoder=decoder, beam_size=args.beam_size, lm=lm,
                           lm_weight=args.lm_weight, word_bonus=args.word_bonus) for lp in log_probs]
        elapsed = time.perf_counter() - start
        errors = sum(word_errors(r, h) for r, h in zip(refs, hyps, strict=True))
        print(json.dumps({"decoder": decoder, "utterances": len(refs), "audio_s": round(seconds, 1),
                          "wer": round(errors / max(words, 1), 4), "decode_s": round(elapsed, 3),
                          "decode_s_per_audio_s": round(elapsed / max(seconds, 1e-9), 5)}))
    if "flashlight" not in decoders:
        print(json.dumps({"decoder": "flashlight", "skipped": "flashlight-text is not installed"}))


if __name__ == "__main__":
    main()
