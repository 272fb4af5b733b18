"""The call-center pipeline: ``trident serve --artifact ASR --artifact NLP`` answers speech with its transcript
and the transcript's intent, equal to ``infer`` of both artifacts in turn."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import Server, audio_artifact, nlp_artifact, start_server

from trident_audio.export import infer as transcribe
from trident_nlp.export import infer as classify

# the tiny ASR model's kind of output (letters) so the tokenizer knows some of its pieces
TEXTS = ["tibltt bybtbtbkbtbtib", "tbtbtbtbtbybtbtyltytb", "where is my order", "reset my password"]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pipeline")
    return audio_artifact(folder / "asr"), nlp_artifact(folder / "nlp", TEXTS)


def _wav(seconds: float, rate: int, seed: int) -> bytes:
    wave = 0.2 * np.random.default_rng(seed).standard_normal(int(seconds * rate)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format="WAV")
    return buffer.getvalue()


def test_speech_to_intent_equals_both_infers(serving: Callable[..., Server], artifacts: tuple[Path, Path],
                                             tmp_path: Path) -> None:
    asr, nlp = artifacts
    server = serving([asr, nlp], "--max_batch_size", "4", "--batch_timeout", "0.05")
    clips = [_wav(0.5 + 0.3 * i, 16000 if i % 2 else 8000, i) for i in range(4)]
    for i, data in enumerate(clips):
        (tmp_path / f"{i}.wav").write_bytes(data)
    texts = [row["text"] for row in transcribe(str(asr), str(tmp_path))]
    (tmp_path / "texts.txt").write_text("".join(t + "\n" for t in texts))
    intents = classify(str(nlp), str(tmp_path / "texts.txt"))
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda d: server.request("/predict", {"audio": base64.b64encode(d).decode()}),
                                clips * 2))
    for i, (status, got) in enumerate(answers):
        assert status == 200, got
        want = intents[i % 4]
        assert got["text"] == texts[i % 4] != ""
        assert (got["intent"], got["in_scope"]) == (want["intent"], want["in_scope"])
        assert got["confidence"] == pytest.approx(want["confidence"], abs=1e-5)
    status, got = server.request("/predict", {"text": "hi"})
    assert status == 400 and got["field"] == "audio", got
    assert server.alive()


def test_artifacts_that_do_not_chain_are_refused(artifacts: tuple[Path, Path], tmp_path: Path) -> None:
    asr, nlp = artifacts
    with pytest.raises(AssertionError, match=r"exited with 2[\s\S]*nlp -> audio do not chain"):
        start_server([nlp, asr], tmp_path / "server.log")
