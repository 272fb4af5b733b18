"""The call-center pipeline: ``trident serve --artifact ASR --artifact NLP`` answers speech with its transcript
and the transcript's intent, equal to ``infer`` of both artifacts in turn."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from serve_fixtures import Server, audio_artifact, nlp_artifact, start_server

from trident_audio.export import infer as transcribe
from trident_core.umbrella import main
from trident_nlp.export import infer as classify

pytestmark = pytest.mark.slow  # its module fixture builds artifacts (25-40 s on 2 cores): the slow pass (issue 17)

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
    texts = [row["pred_text"] for row in transcribe(str(asr), str(tmp_path))]
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


def test_offline_pipeline_equals_the_served_one(artifacts: tuple[Path, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    asr, nlp = artifacts
    for i in range(3):
        (tmp_path / "audio" / f"{i}.wav").parent.mkdir(exist_ok=True)
        (tmp_path / "audio" / f"{i}.wav").write_bytes(_wav(0.6 + 0.2 * i, 16000, i))
    manifest = tmp_path / "audio" / "manifest.jsonl"
    # a reference `text` in the manifest (NeMo's layout): the pipeline must classify the transcript (`pred_text`)
    manifest.write_text("".join(json.dumps({"audio_filepath": f"{i}.wav", "text": "where is my refund"}) + "\n"
                                for i in range(3)))
    main(["pipeline", "--artifact", str(asr), "--artifact", str(nlp), "--input", str(manifest),
          "--output", str(tmp_path / "pipeline.jsonl")])
    rows = [json.loads(line) for line in (tmp_path / "pipeline.jsonl").read_text().splitlines()]
    texts = [row["pred_text"] for row in transcribe(str(asr), str(manifest))]
    (tmp_path / "texts.txt").write_text("".join(t + "\n" for t in texts))
    intents = classify(str(nlp), str(tmp_path / "texts.txt"))
    assert [r["pred_text"] for r in rows] == texts and all(texts)
    assert [(r["intent"], r["in_scope"]) for r in rows] == [(w["intent"], w["in_scope"]) for w in intents]
    assert [Path(r["audio_filepath"]).name for r in rows] == ["0.wav", "1.wav", "2.wav"]
    with pytest.raises(SystemExit) as info:
        main(["pipeline", "--artifact", str(nlp), "--artifact", str(asr), "--input", str(manifest)])
    assert info.value.code == 2 and "nlp -> audio do not chain" in capsys.readouterr().err
