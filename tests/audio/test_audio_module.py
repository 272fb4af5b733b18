"""The model and the LightningModule: shapes, padding invariance, overfitting a few utterances, export parity."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import torch

from trident_audio.chunks import plan_chunks
from trident_audio.data import SpeechDataset, collate_speech, read_manifest
from trident_audio.export import Transcriber
from trident_audio.model import tiny_ctc_model, tiny_encoder
from trident_audio.module import SpeechModule, word_errors
from trident_audio.text import CharTokenizer
from trident_core.export import export_artifact


def test_padding_does_not_change_an_utterance() -> None:
    torch.manual_seed(0)
    model = tiny_ctc_model().eval()
    wave = 0.1 * torch.randn(1, 12000)
    alone, n_alone = model(wave, torch.tensor([12000]))
    padded = torch.cat([wave, torch.zeros(1, 8000)], dim=1)
    batch = torch.cat([padded, 0.1 * torch.randn(1, 20000)])
    both, n_both = model(batch, torch.tensor([12000, 20000]))
    assert n_alone.tolist() == [n_both[0].item()] == [19]  # 76 frames -> 4x subsampling
    # identical away from the end; the Conformer's depthwise convolution sees a few padded frames at the edge
    assert torch.allclose(alone[0, :-4], both[0, :15], atol=1e-4)
    assert (alone[0].argmax(-1) == both[0, :19].argmax(-1)).float().mean() > 0.8
    assert both.shape[-1] == 29 and torch.allclose(both.exp().sum(-1), torch.ones(2, both.shape[1]), atol=1e-5)


def test_tiny_model_overfits_a_few_utterances(corpus: Path) -> None:
    torch.manual_seed(0)
    utts = sorted(read_manifest(corpus / "train.jsonl", tokenizer=CharTokenizer()), key=lambda u: u.duration)[:3]
    batch = collate_speech([SpeechDataset(utts, 16000)[i] for i in range(3)])
    module = SpeechModule(tiny_encoder(), spec_augment=False, lm_order=0,
                          optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3))

    def cer() -> float:
        module.eval()
        with torch.no_grad():
            hyps = module.transcribe(*module._log_probs(batch), decoder="greedy")
        module.train()
        chars = sum(len(t) for t in batch["text"])
        return sum(word_errors(" ".join(r), " ".join(h)) for r, h in zip(batch["text"], hyps, strict=True)) / chars

    before = cer()
    loader = torch.utils.data.DataLoader([batch], batch_size=None)
    trainer = L.Trainer(max_steps=120, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model gains nothing from threads, and loses a lot on a busy machine
    try:
        trainer.fit(module, train_dataloaders=loader)
    finally:
        torch.set_num_threads(threads)
    after = cer()
    assert before > 0.6 and after < before / 3, (before, after)


def test_export_parity_and_artifact_transcription(tmp_path: Path, corpus: Path) -> None:
    module = SpeechModule(tiny_encoder(), decoder="beam", lm_order=0).eval()
    result = export_artifact(module.export_spec(), tmp_path / "artifact", domain="audio")
    assert result.parity["onnx"]["max_abs_diff"] < 1e-4 and result.parity["torch_export"]["max_abs_diff"] < 1e-4
    meta = json.loads((tmp_path / "artifact" / "metadata.json").read_text())
    assert meta["inputs"][0]["shape"] == ["batch", "samples"] and meta["domain_metadata"]["sample_rate"] == 16000
    transcriber = Transcriber(tmp_path / "artifact")
    wave = transcriber.read(sorted((corpus / "test").glob("*.wav"))[0])
    onnx_lp = transcriber.log_probs([wave, wave[:8000]])
    with torch.no_grad():
        eager, lengths = module(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
    assert np.abs(onnx_lp[0] - eager[0, : lengths[0]].numpy()).max() < 1e-4
    assert len(onnx_lp[1]) < len(onnx_lp[0])  # a batch of two lengths in one run


def test_long_audio_is_chunked_at_quiet_points() -> None:
    rate = 1000
    loud = np.ones(rate * 3, dtype=np.float32)
    wave = np.concatenate([loud, np.zeros(rate // 10, dtype=np.float32), loud, loud])
    chunks = plan_chunks(wave, rate, chunk_seconds=4.0, overlap_seconds=1.5)
    assert chunks[-1].keep_to == len(wave) and all(c.end - c.start <= 4 * rate for c in chunks)
    assert len(chunks) >= 2 and 3000 <= chunks[0].keep_to <= 3100  # the first cut falls in the silence
