"""Timing primitives: per-arm peak RSS (sampled, or each arm in its own process) and interleaved repetitions."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def current_rss_mb() -> float:
    """Resident memory of this process now, in MiB (Linux ``/proc/self/statm``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRss:
    """Peak resident memory of this process while the ``with`` block runs, sampled every ``interval`` seconds.

    Unlike the kernel's VmHWM (which ``/proc/self/clear_refs`` does not reset), this starts from the memory held at
    entry, so each arm gets its own peak; memory held by the process before the block (the other arm's model) is
    in it too, so compare arms run in the same process by their difference. Spikes shorter than ``interval`` can
    be missed."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss_mb())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRss:
        self.peak = current_rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # entered (a caller's set-up may fail before it enters)
            self._thread.join()
        self.peak = max(self.peak, current_rss_mb())


def interleave(arms: dict[str, Callable[[], Any]], reps: int, warmup: int = 1) -> dict[str, dict[str, Any]]:
    """Time each arm ``reps`` times in the order A, B, A, B, ... after ``warmup`` untimed rounds.

    Returns per arm: ``times`` (seconds, one per repetition, in order), their ``median``, ``min`` and ``max``, and
    ``rss_mb`` (the largest :class:`PeakRss` of one call)."""
    for _ in range(warmup):
        for fn in arms.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in arms}
    rss: dict[str, float] = {name: 0.0 for name in arms}
    for _ in range(reps):
        for name, fn in arms.items():
            with PeakRss() as peak:
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
            rss[name] = max(rss[name], peak.peak)
    return {name: {"median": statistics.median(ts), "min": min(ts), "max": max(ts), "times": ts,
                   "rss_mb": round(rss[name], 1)} for name, ts in times.items()}


def _arm_worker(conn: Any, factory: str, kwargs: dict[str, Any], threads: int) -> None:
    """One arm in its own process: build it once, then time ``fn()`` on every "run" until "stop"."""
    import importlib
    import sys

    module, _, name = factory.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)(**kwargs)
    except Exception as err:
        conn.send(f"{factory} failed: {type(err).__name__}: {err}")
        raise
    if "torch" in sys.modules:  # an arm that does not use torch does not pay for importing it
        sys.modules["torch"].set_num_threads(threads)
    while conn.recv() == "run":
        start = time.perf_counter()
        fn()
        conn.send(time.perf_counter() - start)
    # VmHWM of this process's own memory map (ru_maxrss would carry the forking parent's peak across exec)
    hwm = [line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:")]
    conn.send(int(hwm[0].split()[1]) / 1024)


def isolated_interleave(arms: dict[str, tuple[str, dict[str, Any]]], reps: int, warmup: int = 1,
                        threads: int | None = None) -> dict[str, dict[str, Any]]:
    """:func:`interleave` with every arm in its own spawned process, so each arm's peak RSS is its own.

    ``arms`` maps a name to ``("module:factory", kwargs)``; the factory runs once in the arm's process (its set-up,
    not timed) and returns the callable to time. The arms run one at a time, A, B, A, B, ...; ``rss_mb`` is the
    peak RSS of the arm's process over its whole life (interpreter, imports, set-up and every call)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    threads = threads or torch_threads()
    procs, conns = {}, {}
    try:
        for name, (factory, kwargs) in arms.items():
            parent, child = ctx.Pipe()
            procs[name] = ctx.Process(target=_arm_worker, args=(child, factory, kwargs, threads), daemon=True)
            procs[name].start()
            child.close()  # so a worker that dies ends recv() with EOFError instead of a hang
            conns[name] = parent
        times: dict[str, list[float]] = {name: [] for name in arms}
        for rep in range(warmup + reps):
            for name, conn in conns.items():
                conn.send("run")
                elapsed = conn.recv()
                if isinstance(elapsed, str):
                    raise RuntimeError(f"arm {name!r}: {elapsed}")
                if rep >= warmup:
                    times[name].append(elapsed)
        rss = {}
        for name, conn in conns.items():
            conn.send("stop")
            rss[name] = conn.recv()
    finally:
        for proc in procs.values():
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    return {name: {"median": statistics.median(ts), "min": min(ts), "max": max(ts), "times": ts,
                   "rss_mb": round(rss[name], 1)} for name, ts in times.items()}
