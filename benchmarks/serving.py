"""P8: ``trident serve`` under 32 concurrent local clients, dynamic batching vs ``--max_batch_size 1``.

For nlp (the P3 model) and audio (the P5 model, 3 s clips) the same artifact is served twice, one server at a
time on the same port range and threads: batched (``--max_batch_size 32 --batch_timeout 0.01``) and unbatched
(``--max_batch_size 1``). 32 client threads (in this process, ``http.client`` keep-alive connections) each send
requests one after the other; requests per second is the total over the wall time, latency is per request
(p50, p99). The clients share the machine with the server, as local clients do.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Arm, Row, Settings, make_row

COMMAND = "uv run python -m benchmarks --only P8"
CLIENTS = 32
ARMS = {"batched": ["--max_batch_size", "32", "--batch_timeout", "0.01"], "unbatched": ["--max_batch_size", "1"]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(artifact: Path, log: Path, args: list[str], threads: int) -> tuple[subprocess.Popen, int]:
    """A ``trident serve`` subprocess on a free port, once ``/health`` answers 200."""
    port = _free_port()
    env = {**os.environ, "TRIDENT_ORT_THREADS": str(threads)}
    env.pop("TRIDENT_API_KEY", None)
    cmd = [sys.executable, "-c", "from trident_core.umbrella import main; main()", "serve", "--artifact",
           str(artifact), "--port", str(port), "--max_queue", "4096", *args]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.3)
    stop(proc)
    raise RuntimeError(f"server not healthy after 180 s: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def load(port: int, bodies: list[bytes], per_client: int) -> dict[str, Any]:
    """``CLIENTS`` threads, each sending ``per_client`` requests in turn; rps, p50/p99 latency and batch sizes."""
    latencies: list[float] = []
    batches: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(CLIENTS + 1)

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        barrier.wait()
        for n in range(per_client):
            body = bodies[(index + n) % len(bodies)]
            t0 = time.perf_counter()
            conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            took = time.perf_counter() - t0
            with lock:
                if resp.status == 200:
                    latencies.append(took)
                    batches.append(int(resp.getheader("X-Trident-Batch-Size") or 0))
                else:
                    errors.append(str(resp.status))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    barrier.wait()
    start_time = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start_time
    lat = np.array(latencies)
    return {"rps": len(latencies) / wall, "p50_ms": float(np.percentile(lat, 50) * 1e3),
            "p99_ms": float(np.percentile(lat, 99) * 1e3), "requests": len(latencies), "errors": len(errors),
            "mean_batch": statistics.mean(batches) if batches else 0.0, "wall_s": wall}


def _bodies(domain: str, settings: Settings) -> list[bytes]:
    if domain == "nlp":
        from trident_nlp.defaults import generate_default_dataset

        texts = [r["text"] for r in generate_default_dataset()["test"][:64]]
        return [json.dumps({"text": t}).encode() for t in texts]
    import soundfile as sf

    rng = np.random.default_rng(0)
    out = []
    for _ in range(8):
        buffer = io.BytesIO()
        sf.write(buffer, (0.1 * rng.standard_normal(3 * 16000)).astype(np.float32), 16000, format="WAV")
        out.append(json.dumps({"audio": base64.b64encode(buffer.getvalue()).decode()}).encode())
    return out


def _artifact(domain: str, settings: Settings) -> Path:
    from trident_core.export import export_artifact

    folder = settings.workdir / "P8" / domain
    if domain == "nlp":
        from benchmarks.nlp_inference import build_intent

        module, _ = build_intent(settings, "scratch" if settings.quick else "auto")
    else:
        from benchmarks.audio import build_module

        module = build_module(settings.quick)
    return export_artifact(module.export_spec(), folder, domain=domain).path


def _vmhwm_mb(pid: int) -> float:
    """VmHWM (own peak RSS) of one process, in MiB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux ``/proc/<pid>/task/<tid>/children``)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                queue += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def _peak_rss_mb(pid: int) -> float | None:
    """Peak RSS of a running server: the sum of the VmHWM of its process and every descendant (LitServe runs the
    model in worker processes, so the launcher's own peak leaves the model out). Each process's own peak, summed:
    an upper bound of the tree's peak at any one moment."""
    total = sum(_vmhwm_mb(p) for p in _process_tree(pid))
    return total or None


def run(settings: Settings) -> list[Row]:
    rows = []
    reps = 3
    for domain in ("nlp", "audio"):
        artifact = _artifact(domain, settings)
        bodies = _bodies(domain, settings)
        per_client = settings.pick(2, 8 if domain == "nlp" else 3)
        measured: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
        rss: dict[str, float | None] = {}
        procs = {}
        try:  # both servers up; the load rounds alternate batched, unbatched, ... (an idle server costs no CPU)
            for arm, args in ARMS.items():
                procs[arm] = start(artifact, settings.workdir / "P8" / f"{domain}-{arm}.log", args, settings.threads)
                load(procs[arm][1], bodies, 1)  # warm-up: sessions, allocations, connections
            for _ in range(reps):
                for arm, (_, port) in procs.items():
                    measured[arm].append(load(port, bodies, per_client))
            rss = {arm: _peak_rss_mb(proc.pid) for arm, (proc, _) in procs.items()}
        finally:
            for proc, _ in procs.values():
                stop(proc)
        model = "all-minilm-l6-v2 intent model" if domain == "nlp" and not settings.quick else (
            "tiny intent model" if domain == "nlp" else "P5 Conformer-CTC, 3 s clips")
        what: dict[str, Any]
        what = {"precision": "fp32", "threads": settings.threads, "data": f"{CLIENTS} clients x {per_client} "
                f"requests per round ({model})"}
        b, u = measured["batched"], measured["unbatched"]
        notes = (f"{reps} alternating load rounds after a warm-up round per server; mean batch "
                 f"{statistics.mean(r['mean_batch'] for r in b):.1f}; errors {sum(r['errors'] for r in b)}/"
                 f"{sum(r['errors'] for r in u)}; batched: --max_batch_size 32 --batch_timeout 0.01; one worker, "
                 f"{settings.threads} onnxruntime threads; clients in the benchmark process on the same cores; peak "
                 "RSS: each server's process tree, the VmHWM of every process summed")
        for key, unit, target in (("rps", "requests/s", (">=", 3.0)), ("p99_ms", "ms p99", ("<=", 2.0))):
            rows.append(make_row(
                "P8", f"`trident serve` {domain}, {CLIENTS} concurrent clients, {unit}",
                Arm("--max_batch_size 1", values=[r[key] for r in u], batch=1, peak_rss_mb=rss.get("unbatched"),
                    **what),
                Arm("--max_batch_size 32", values=[r[key] for r in b], batch=32, peak_rss_mb=rss.get("batched"),
                    **what), unit, COMMAND, ratio="trident / baseline", target=target, notes=notes,
                extra={"rounds": measured},
            ))
    return rows
