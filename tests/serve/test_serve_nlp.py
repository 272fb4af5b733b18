"""``trident serve`` on an intent artifact: answers equal ``infer``, batching, every bad input, the API key,
the queue bound, and no torch in the serving process."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from serve_fixtures import LABELS, Server, nlp_artifact, run_readme_curl, start_server

from trident_nlp.export import infer

TEXTS = ["i want my money back", "where is my package", "reset my password", "tell me a joke",
         "refund", "track my order please right now", "hi", "when will my parcel arrive at the door"]
KEY = "s3cret-key"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return nlp_artifact(tmp_path_factory.mktemp("nlp") / "artifact", TEXTS)


@pytest.fixture(scope="module")
def server(serving: Callable[..., Server], artifact: Path) -> Server:
    return serving(artifact, "--max_batch_size", "8", "--batch_timeout", "0.05", "--max_body_mb", "0.01",
                   api_key=KEY)


def _expected(artifact: Path, tmp_path: Path) -> list[dict]:
    source = tmp_path / "texts.txt"
    source.write_text("".join(t + "\n" for t in TEXTS))
    return infer(str(artifact), str(source))


def _same(got: dict, want: dict) -> None:
    assert set(got) == {"intent", "confidence", "in_scope"}
    assert (got["intent"], got["in_scope"]) == (want["intent"], want["in_scope"])
    assert got["confidence"] == pytest.approx(want["confidence"], abs=1e-5)


def test_health_and_no_torch_in_the_server(server: Server) -> None:
    assert server.request("/health") == (200, "ok")
    log = server.log.read_text()
    workers = re.findall(r"worker \d+ ready; providers: (\S+); torch imported: (\w+); lightning imported: (\w+)",
                         log)
    assert workers == [("CPUExecutionProvider", "False", "False")], log  # no onnxruntime-gpu here: CPU by default
    assert "providers CPUExecutionProvider;" in log.splitlines()[0], log
    assert "torch imported: False" in log.splitlines()[0], log


def test_unavailable_providers_are_refused_at_startup(artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"exited with 2[\s\S]*\['BogusExecutionProvider'\] not available"):
        start_server(artifact, tmp_path / "server.log", "--providers", "BogusExecutionProvider")


def test_one_request_and_many_at_once_equal_infer(server: Server, artifact: Path, tmp_path: Path) -> None:
    want = _expected(artifact, tmp_path)
    assert len({row["intent"] for row in want}) > 1  # the control below needs varied answers
    status, got = server.request("/predict", {"text": TEXTS[0]})
    assert status == 200, got
    _same(got, want[0])
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda i: server.request_with_headers("/predict", {"text": TEXTS[i % len(TEXTS)]}),
                                range(32)))
    for i, (status, got, _) in enumerate(answers):
        assert status == 200, got
        _same(got, want[i % len(TEXTS)])
    # concurrent requests were batched (the header says each answer's batch size), never beyond max_batch_size
    sizes = [int(headers["x-trident-batch-size"]) for _, _, headers in answers]
    assert max(sizes) > 1 and max(sizes) <= 8, sizes


@pytest.mark.parametrize(("body", "status", "field", "message"), [
    (b"{not json", 400, "body", "not valid JSON"),
    (b"[1, 2]", 400, "body", "must be a JSON object"),
    (b"\xff\xfe", 400, "body", "not valid JSON"),
    ({"txt": "hello"}, 400, "text", "expected a JSON string in 'text'"),
    ({"text": 42}, 400, "text", "expected a JSON string"),
    ({"text": "x" * 20_000}, 413, "body", "request body over 10485 bytes"),
])
def test_bad_requests_are_refused_and_the_server_goes_on(server: Server, body: bytes | dict, status: int,
                                                         field: str, message: str) -> None:
    got_status, got = server.request("/predict", body)
    assert got_status == status, got
    assert got["field"] == field and message in got["error"], got
    assert server.request("/predict", {"text": "hi"})[0] == 200


@pytest.mark.parametrize("key", [None, "wrong", f"{KEY}x"])
def test_a_missing_or_wrong_api_key_gets_401(server: Server, key: str | None) -> None:
    status, got = server.request("/predict", {"text": "hi"}, key=key)
    assert status == 401 and got["field"] == "Authorization" and "TRIDENT_API_KEY" in got["error"], got
    assert server.request("/health", key=None)[0] == 200  # health stays open for load balancers


def test_a_bad_request_in_a_batch_does_not_fail_the_others(server: Server) -> None:
    bodies = [{"text": "hi"}, {"text": 1}] * 8
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda b: server.request("/predict", b), bodies))
    assert [a[0] for a in answers] == [200, 400] * 8, answers


def test_a_full_queue_answers_503(serving: Callable[..., Server], artifact: Path) -> None:
    tight = serving(artifact, "--max_queue", "2", "--batch_timeout", "1.0", "--max_batch_size", "64")
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda _: tight.request("/predict", {"text": "hi"}), range(12)))
    statuses = sorted(a[0] for a in answers)
    assert 200 in statuses and 503 in statuses and set(statuses) == {200, 503}, answers
    full = next(a[1] for a in answers if a[0] == 503)
    assert "2 requests in flight" in full["error"], full
    assert tight.request("/predict", {"text": "hi"})[0] == 200


def test_the_server_is_still_up(server: Server) -> None:
    assert server.alive()
    assert json.loads(json.dumps(server.request("/predict", {"text": "hi"})[1]))["intent"] in LABELS


def test_the_readme_curl_examples_run(server: Server, artifact: Path, tmp_path: Path) -> None:
    assert run_readme_curl("/health", server, tmp_path) == "ok"
    got = json.loads(run_readme_curl("where is my order", server, tmp_path))
    source = tmp_path / "one.txt"
    source.write_text("where is my order\n")
    _same(got, infer(str(artifact), str(source))[0])
