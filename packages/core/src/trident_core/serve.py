"""``trident serve``: one exported artifact behind HTTP, with LitServe's dynamic batching and workers.

The domain comes from the artifact's ``metadata.json``; its :class:`~trident_core.domain.DomainSpec` names a
serving adapter (``serve = "package.module:Class"``) that turns one JSON request into the domain runner's input and
the runner's output into the JSON answer; the runner (``IntentPredictor``, ``Transcriber``, ``Segmenter``) does the
inference, as it does for ``infer``. An adapter is built as ``Adapter(artifact, limits)`` and has
``decode(request: dict) -> item`` (raising :class:`RequestError`), ``predict(items: list) -> list`` and
``encode(output) -> dict``.

Safety lives in :class:`Guard`, an ASGI middleware in front of LitServe: the API key, the body limit, the JSON
check and the bounded number of requests in flight, all answered before a request reaches a worker queue.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import litserve as ls
from fastapi.responses import JSONResponse

from trident_core.artifact import check_providers, default_providers, load_artifact, read_metadata
from trident_core.domain import installed_domains, load_object
from trident_core.errors import ArtifactError, ConfigError

API_KEY_ENV = "TRIDENT_API_KEY"
PREDICT_PATH = "/predict"
log = logging.getLogger("trident.serve")


class RequestError(Exception):
    """A request the server refuses: answered with ``status`` and ``{"error": message, "field": field}``.

    Args:
        status: HTTP status (400 malformed, 413 too large).
        field: The request field at fault (``"text"``, ``"audio"``, ``"image"``, ``"body"``).
        message: What is wrong and what to send instead.
    """

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.status, self.field, self.message = status, field, message

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message, "field": self.field}, status_code=self.status)


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server.

    Attributes:
        max_body_bytes: Largest request body (413 above it).
        max_audio_seconds: Longest audio (413 above it).
        max_voxels: Largest volume, in voxels (413 above it).
        max_queue: Requests in flight (queued or running) per API server; 503 above it.
    """

    max_body_bytes: int = 64 * 2**20
    max_audio_seconds: float = 120.0
    max_voxels: int = 512**3
    max_queue: int = 256


def imported_heavy() -> dict[str, bool]:
    """Whether torch and Lightning are loaded in this process (the serving path of nlp and audio needs neither)."""
    return {name: name in sys.modules for name in ("torch", "lightning")}


def decode_b64(request: dict[str, Any], field: str) -> bytes:
    """The bytes of a base64 string field; :class:`RequestError` (400) naming the field otherwise."""
    import base64
    import binascii

    value = request.get(field)
    if not isinstance(value, str) or not value:
        raise RequestError(400, field, f"expected a non-empty base64 string in {field!r}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, field, f"{field!r} is not valid base64") from None


class Chain:
    """Adapters run one after the other (the call-center pipeline: speech -> text -> intent).

    The first decodes the request; each next one decodes the previous one's answer (the audio answer's ``text`` is
    the nlp request's ``text``); the answer merges every stage's answer.
    """

    def __init__(self, stages: list[Any]) -> None:
        self.stages = stages

    def decode(self, request: dict[str, Any]) -> Any:
        return self.stages[0].decode(request)

    def predict(self, items: list[Any]) -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = [{} for _ in items]
        for n, stage in enumerate(self.stages):
            if n:
                items = [stage.decode(answer) for answer in answers]
            for answer, out in zip(answers, stage.predict(items), strict=True):
                answer.update(stage.encode(out))
        return answers

    def encode(self, answer: dict[str, Any]) -> dict[str, Any]:
        return answer


PIPELINES = {("audio", "nlp")}  # stage domains that chain: the first one's answer holds the next one's request
# Offline (`trident pipeline`) the first stage is its domain's `infer`, whose rows name fields as that domain's files
# do (audio: NeMo's `pred_text`): the next stage's request field <- the first stage's row field.
OFFLINE_REQUEST = {("audio", "nlp"): {"text": "pred_text"}}


class _Rejected:
    """A decoded request that failed: kept in its batch slot so the other requests of the batch still run."""

    def __init__(self, error: RequestError) -> None:
        self.error = error


@dataclass(frozen=True)
class _Done:
    """A runner output and the size of the batch it ran in (sent back as the ``X-Trident-Batch-Size`` header)."""

    output: Any
    batch: int


BATCH_HEADER = "X-Trident-Batch-Size"


class TridentAPI(ls.LitAPI):
    """LitServe API around a domain adapter; one instance per worker process.

    Args:
        artifacts: Artifact folders: one, or the stages of a pipeline (see :data:`PIPELINES`).
        adapters: ``"package.module:Class"`` of each artifact's serving adapter.
        limits: The request limits.
        max_batch_size: Requests per batch.
        batch_timeout: Seconds to wait for a batch to fill.
    """

    def __init__(self, artifacts: list[str], adapters: list[str], limits: Limits, max_batch_size: int,
                 batch_timeout: float, providers: list[str]):
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path=PREDICT_PATH)
        self.artifacts, self.adapter_refs, self.limits = artifacts, adapters, limits
        self.providers = providers

    def setup(self, device: str) -> None:
        opened = [load_artifact(path, providers=self.providers) for path in self.artifacts]
        stages = [load_object(ref)(artifact, self.limits) for artifact, ref in zip(opened, self.adapter_refs,
                                                                                   strict=True)]
        self.adapter = stages[0] if len(stages) == 1 else Chain(stages)
        heavy = imported_heavy()
        # the session is created here, not on the first request, so the log shows the providers it really got
        used = sorted({p for artifact in opened for p in artifact.session.get_providers()})
        print(f"trident serve: worker {os.getpid()} ready; providers: {', '.join(used)}; torch imported: "
              f"{heavy['torch']}; lightning imported: {heavy['lightning']}", flush=True)

    def decode_request(self, request):  # type: ignore[no-untyped-def]  # unannotated: LitServe then passes the JSON
        try:
            return self.adapter.decode(request)
        except RequestError as err:
            return _Rejected(err)

    def batch(self, inputs: list[Any]) -> list[Any]:
        return list(inputs)

    def unbatch(self, output: list[Any]) -> list[Any]:
        return list(output)

    def predict(self, x: Any) -> Any:
        items = x if self.max_batch_size > 1 else [x]
        good = [i for i, item in enumerate(items) if not isinstance(item, _Rejected)]
        results: list[Any] = list(items)
        if good:
            for i, out in zip(good, self.adapter.predict([items[i] for i in good]), strict=True):
                results[i] = _Done(out, len(good))
        return results if self.max_batch_size > 1 else results[0]

    def encode_response(self, output: Any) -> Any:
        if isinstance(output, _Rejected):
            return output.error.response()
        try:
            answer = self.adapter.encode(output.output)
        except RequestError as err:
            return err.response()
        return JSONResponse(answer, headers={BATCH_HEADER: str(output.batch)})


class Guard:
    """ASGI middleware answering before LitServe: 401 (API key), 413 (body), 400 (not a JSON object), 503 (full).

    Args:
        app: The wrapped ASGI app.
        api_key: Required ``Authorization: Bearer`` token; ``None``: no key.
        limits: ``max_body_bytes`` and ``max_queue`` are applied here.
    """

    def __init__(self, app: Any, api_key: str | None, limits: Limits) -> None:
        self.app, self.api_key, self.limits = app, api_key, limits
        self.in_flight = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PREDICT_PATH:
            await self.app(scope, receive, send)
            return
        refusal = self._check_auth(scope)
        body = b""
        if refusal is None:
            body, refusal = await self._read_body(receive)
        if refusal is None and self.in_flight >= self.limits.max_queue:
            refusal = (503, "body", f"the server is full ({self.limits.max_queue} requests in flight); retry later")
        if refusal is not None:
            status, field, message = refusal
            await JSONResponse({"error": message, "field": field}, status_code=status)(scope, receive, send)
            return
        self.in_flight += 1
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            await self.app(scope, replay, send)
        finally:
            self.in_flight -= 1

    def _check_auth(self, scope: dict) -> tuple[int, str, str] | None:
        if not self.api_key:
            return None
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").decode("latin-1")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
            return 401, "Authorization", f"missing or wrong API key: send 'Authorization: Bearer <{API_KEY_ENV}>'"
        return None

    async def _read_body(self, receive: Any) -> tuple[bytes, tuple[int, str, str] | None]:
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return b"", (400, "body", "the client closed the request")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                return b"", (413, "body", f"request body over {self.limits.max_body_bytes} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            parsed = json.loads(body)
        except (UnicodeDecodeError, ValueError) as err:
            return body, (400, "body", f"the body is not valid JSON ({err})")
        if not isinstance(parsed, dict):
            return body, (400, "body", "the body must be a JSON object")
        return body, None


def adapter_of(artifact: str | Path) -> tuple[str, str]:
    """``(domain, adapter reference)`` of an artifact folder, from its ``metadata.json`` and the installed domains.

    Raises:
        ArtifactError: the artifact is unreadable or its domain is not installed or cannot be served.
    """
    domain = read_metadata(artifact)["domain"]
    spec = installed_domains().get(domain)
    if spec is None:
        raise ArtifactError(f"{artifact}: domain {domain!r} is not installed; install trident-{domain}")
    if not spec.serve:
        raise ArtifactError(f"{artifact}: the {domain} domain has no serving adapter")
    return domain, spec.serve


def serve(artifacts: str | list[str], host: str = "127.0.0.1", port: int = 8000, max_batch_size: int = 8,
          batch_timeout: float = 0.01, workers: int = 1, limits: Limits | None = None,
          providers: list[str] | None = None) -> None:
    """Run the server until interrupted. See the module docstring and the README's Serving section.

    Args:
        artifacts: One artifact folder, or several run as a pipeline (an audio artifact then an nlp one).
        providers: onnxruntime execution providers; ``None``: CUDA when onnxruntime-gpu offers it, else CPU.
    """
    if max_batch_size < 1 or workers < 1 or batch_timeout < 0:
        raise ConfigError("--max_batch_size and --workers must be >= 1 and --batch_timeout >= 0")
    artifacts = [artifacts] if isinstance(artifacts, str) else list(artifacts)
    limits = limits or Limits()
    found = [adapter_of(path) for path in artifacts]
    domains = tuple(domain for domain, _ in found)
    if len(domains) > 1 and domains not in PIPELINES:
        raise ConfigError(f"--artifact domains {' -> '.join(domains)} do not chain; a pipeline is one of "
                          f"{[' -> '.join(p) for p in sorted(PIPELINES)]} (e.g. an audio artifact then an nlp one)")
    providers = check_providers(providers) if providers else default_providers()
    api_key = os.environ.get(API_KEY_ENV) or None
    api = TridentAPI(artifacts, [ref for _, ref in found], limits, max_batch_size, batch_timeout, providers)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=workers, timeout=60,
                          middlewares=[(Guard, {"api_key": api_key, "limits": limits})])
    heavy = imported_heavy()
    print(f"trident serve: {' -> '.join(domains)} artifact {' -> '.join(artifacts)} on http://{host}:{port}"
          f"{PREDICT_PATH}; providers {', '.join(providers)}; max_batch_size {max_batch_size}, batch_timeout "
          f"{batch_timeout}s, workers {workers}; "
          f"API key {'required' if api_key else 'off'}; torch imported: {heavy['torch']}", flush=True)
    server.run(host=host, port=port, generate_client_file=False)


def pipeline(artifacts: list[str], input: str, output: str | None = None,
             limits: Limits | None = None) -> list[dict[str, Any]]:
    """``trident pipeline``: the served pipeline offline, over a domain input (for audio: a file, folder or manifest).

    The first artifact runs its domain's ``infer`` on ``input``; each row's answer then goes through the next
    stages' serving adapters exactly as a served request's does. Returns one merged row per input, also written as
    JSONL to ``output`` (a folder gets ``pipeline.jsonl``) when given.

    Raises:
        ConfigError: the artifacts' domains do not chain (see :data:`PIPELINES`).
    """
    from trident_core.output import write_jsonl

    found = [adapter_of(path) for path in artifacts]
    domains = tuple(domain for domain, _ in found)
    if len(domains) < 2 or domains not in PIPELINES:
        raise ConfigError(f"--artifact domains {' -> '.join(domains)} do not chain; a pipeline is one of "
                          f"{[' -> '.join(p) for p in sorted(PIPELINES)]} (e.g. an audio artifact then an nlp one)")
    limits = limits or Limits()
    rows = load_object(installed_domains()[domains[0]].infer)(artifacts[0], input)
    later = Chain([load_object(ref)(load_artifact(path), limits)
                   for path, (_, ref) in zip(artifacts[1:], found[1:], strict=True)])
    fields = OFFLINE_REQUEST[domains[:2]]
    answers = later.predict([later.decode({key: row[source] for key, source in fields.items()}) for row in rows])
    merged = [{**row, **answer} for row, answer in zip(rows, answers, strict=True)]
    if output is not None:
        write_jsonl(merged, output, "pipeline.jsonl")
    return merged
