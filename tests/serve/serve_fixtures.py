"""Helpers of the serving tests (a plain module: test files import it by name): tiny artifacts, a real
``trident serve`` in a subprocess on a free port, and the README's curl lines."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LABELS = ["oos", "password", "refund", "track"]


def nlp_artifact(folder: Path, texts: list[str], labels: list[str] | None = None) -> Path:
    """A tiny intent model with a WordPiece of ``texts``, exported: untrained (random weights give varied intents),
    or fitted to ``labels`` (one per text) until its logits are far apart, for checks that need a model whose
    decisions do not hang on rounding (an untrained model's near-tied logits flip under int8 on some CPUs)."""
    import torch

    from trident_core.export import export_artifact
    from trident_nlp.model import tiny_classifier
    from trident_nlp.module import IntentModule
    from trident_nlp.text import train_wordpiece

    torch.manual_seed(0)
    tokenizer = train_wordpiece(texts, vocab_size=120)
    net = tiny_classifier(num_labels=len(LABELS), vocab_size=tokenizer.get_vocab_size(), max_length=32)
    if labels is not None:
        _fit(net, tokenizer, texts, [LABELS.index(label) for label in labels])
    module = IntentModule(net=net, labels=LABELS, tokenizer_json=tokenizer.to_str())
    module.oos_threshold.fill_(0.3)
    return export_artifact(module.export_spec(), folder, domain="nlp").path


def _fit(net: Any, tokenizer: Any, texts: list[str], targets: list[int], steps: int = 150) -> None:
    """Full-batch Adam on ``texts`` until every logit margin is large (a few seconds for the tiny model)."""
    import torch

    from trident_nlp.text import TextEncoder

    encoder = TextEncoder(tokenizer.to_str(), net.max_length)  # the product's tokenize-and-pad
    ids, mask = (torch.from_numpy(a) for a in encoder.pad(encoder.encode(texts)))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(ids, mask), torch.tensor(targets)).backward()
        optimizer.step()
    net.eval()


def audio_artifact(folder: Path) -> Path:
    """A tiny untrained CTC model (random weights transcribe noise as varied letters), exported."""
    import torch

    from trident_audio.model import tiny_encoder
    from trident_audio.module import SpeechModule
    from trident_core.export import export_artifact

    torch.manual_seed(0)
    module = SpeechModule(tiny_encoder()).eval()
    return export_artifact(module.export_spec(), folder, domain="audio").path


@dataclass
class Server:
    """A running ``trident serve``: its base URL, its log and the API key it expects (if any)."""

    url: str
    log: Path
    proc: subprocess.Popen
    api_key: str | None = None

    def request(self, path: str, body: bytes | dict | None = None, key: str | None = "default",
                timeout: float = 60) -> tuple[int, Any]:
        """``(status, parsed JSON or text)`` of a GET (no body) or POST to ``path``."""
        status, answer, _ = self.request_with_headers(path, body, key, timeout)
        return status, answer

    def request_with_headers(self, path: str, body: bytes | dict | None = None, key: str | None = "default",
                             timeout: float = 60) -> tuple[int, Any, dict[str, str]]:
        """``(status, parsed JSON or text, headers)`` of a GET (no body) or POST to ``path``."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(self.url + path, data=data, method="GET" if data is None else "POST")
        req.add_header("Content-Type", "application/json")
        key = self.api_key if key == "default" else key
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw, headers = resp.status, resp.read(), {k.lower(): v for k, v in resp.headers.items()}
        except urllib.error.HTTPError as err:
            status, raw, headers = err.code, err.read(), {k.lower(): v for k, v in err.headers.items()}
        try:
            return status, json.loads(raw), headers
        except ValueError:
            return status, raw.decode(errors="replace"), headers

    def alive(self) -> bool:
        return self.proc.poll() is None and self.request("/health")[0] == 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(artifact: Path | list[Path], log: Path, *args: str, api_key: str | None = None,
                 startup_s: float = 90) -> Server:
    """Start ``trident serve`` on a free local port and wait for ``/health`` to answer 200."""
    port = free_port()
    env = {**os.environ, "TRIDENT_ORT_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env.pop("TRIDENT_API_KEY", None)
    if api_key:
        env["TRIDENT_API_KEY"] = api_key
    artifacts = [a for path in (artifact if isinstance(artifact, list) else [artifact])
                 for a in ("--artifact", str(path))]
    cmd = [sys.executable, "-c", "from trident_core.umbrella import main; main()", "serve", *artifacts,
           "--port", str(port), *args]
    handle = log.open("wb")
    proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", log, proc, api_key)
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if server.request("/health", timeout=2)[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.3)
    stop_server(server)
    raise AssertionError(f"server not healthy after {startup_s} s:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    """Stop the server and its worker processes (its own process group, started above)."""
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGTERM)
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait()


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_curl(contains: str) -> str:
    """The curl line of the README's Serving section holding ``contains``."""
    section = README.read_text(encoding="utf-8").split("## Serving", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if "curl -s " in line and contains in line]
    assert len(lines) == 1, f"expected one curl line with {contains!r} in the README's Serving section: {lines}"
    return lines[0]


def run_readme_curl(contains: str, server: Server, cwd: Path) -> str:
    """Run the README's curl line against ``server`` (its port, its API key) in ``cwd``; returns stdout."""
    line = readme_curl(contains).replace("http://127.0.0.1:8000", server.url)
    if server.api_key:
        line = line.replace("curl -s ", f"curl -s -H 'Authorization: Bearer {server.api_key}' ", 1)
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {line}"], cwd=cwd, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, (line, done.stderr)
    return done.stdout
