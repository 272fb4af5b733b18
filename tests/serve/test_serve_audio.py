"""``trident serve`` on a speech artifact: any rate, mono or stereo, WAV or FLAC; answers equal ``infer``; bad
audio, long audio and bad base64 refused while the server goes on."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from serve_fixtures import Server, audio_artifact, run_readme_curl

from trident_audio.export import infer

# (name, seconds, rate, channels, format): several rates and layouts, resampled and mixed down by the server
CLIPS = [("a.wav", 0.6, 16000, 1, "WAV"), ("b.flac", 0.9, 8000, 2, "FLAC"), ("c.wav", 1.2, 22050, 1, "WAV"),
         ("d.flac", 0.4, 44100, 2, "FLAC")]


def _clip(seconds: float, rate: int, channels: int, fmt: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.2 * np.sin(2 * np.pi * (200 + 150 * seed) * t) + 0.05 * rng.standard_normal(len(t))
    samples = wave if channels == 1 else np.stack([wave, -wave * 0.5], axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, samples.astype(np.float32), rate, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("clips")
    out = {name: _clip(seconds, rate, ch, fmt, i) for i, (name, seconds, rate, ch, fmt) in enumerate(CLIPS)}
    for name, data in out.items():
        (folder / name).write_bytes(data)
    return out


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return audio_artifact(tmp_path_factory.mktemp("asr") / "artifact")


@pytest.fixture(scope="module")
def server(serving: Callable[..., Server], artifact: Path) -> Server:
    return serving(artifact, "--max_batch_size", "4", "--batch_timeout", "0.05", "--max_audio_seconds", "2")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_answers_equal_infer_one_and_many_at_once(server: Server, artifact: Path, clips: dict[str, bytes],
                                                  tmp_path: Path) -> None:
    for name, data in clips.items():
        (tmp_path / name).write_bytes(data)
    want = {Path(row["audio_filepath"]).name: row["pred_text"] for row in infer(str(artifact), str(tmp_path))}
    names = list(clips)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda i: server.request("/predict", {"audio": _b64(clips[names[i % 4]])}),
                                range(12)))
    for i, (status, got) in enumerate(answers):
        name, seconds = names[i % 4], CLIPS[i % 4][1]
        assert status == 200, got
        assert got["text"] == want[name], (name, got, want)
        assert got["duration"] == pytest.approx(seconds, abs=1e-3)


def _truncated_wav() -> bytes:
    return _clip(0.5, 16000, 1, "WAV", 0)[:30]


def _empty_wav() -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(0, np.float32), 16000, format="WAV")
    return buffer.getvalue()


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"audio": "not base64 !!"}, 400, "is not valid base64"),
    ({"audio": ""}, 400, "expected a non-empty base64 string"),
    ({"wave": "AAAA"}, 400, "expected a non-empty base64 string in 'audio'"),
    ({"audio": 3}, 400, "expected a non-empty base64 string"),
    ({"audio": _b64(b"RIFF0000WAVEnot really a wav")}, 400, "not a readable WAV/FLAC file"),
    ({"audio": _b64(_truncated_wav())}, 400, "not a readable WAV/FLAC file"),
    ({"audio": _b64(_empty_wav())}, 400, "zero audio samples"),
    ({"audio": _b64(_clip(3.0, 8000, 1, "WAV", 1))}, 413, "audio of 3.0 s is over the limit of 2 s"),
])
def test_bad_audio_is_refused_and_the_server_goes_on(server: Server, clips: dict[str, bytes], body: dict,
                                                     status: int, message: str) -> None:
    got_status, got = server.request("/predict", body)
    assert got_status == status, got
    assert got["field"] == "audio" and message in got["error"], got
    assert server.request("/predict", {"audio": _b64(clips["a.wav"])})[0] == 200


def test_no_torch_in_the_audio_server(server: Server) -> None:
    assert re.findall(r"ready; providers: \S+; torch imported: (\w+)", server.log.read_text()) == ["False"]


def test_the_server_is_still_up(server: Server) -> None:
    assert server.alive()


def test_the_readme_curl_example_runs(server: Server, artifact: Path, clips: dict[str, bytes], tmp_path: Path) -> None:
    (tmp_path / "call.wav").write_bytes(clips["c.wav"])
    got = json.loads(run_readme_curl("call.wav", server, tmp_path))
    assert got["text"] == infer(str(artifact), str(tmp_path / "call.wav"))[0]["pred_text"]
