"""Long recordings in overlapping windows: where to cut them, and how to join the windows' CTC frames.

Numpy only (``trident serve`` and ``infer`` use it without torch).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One window of a long recording (samples ``start:end``) and the part of it whose frames are kept
    (``keep_from:keep_to``, inside the window); the kept parts of a plan tile the recording without gaps."""

    start: int
    end: int
    keep_from: int
    keep_to: int


def _quietest(samples: np.ndarray, lo: int, hi: int, sample_rate: int) -> int:
    """The middle of the quietest 20 ms of ``samples[lo:hi]`` (``lo`` when the span is shorter than 20 ms)."""
    frame = max(1, sample_rate // 50)
    window = samples[lo:hi]
    usable = len(window) // frame * frame
    if usable == 0:
        return lo
    energy = (window[:usable].reshape(-1, frame) ** 2).mean(axis=1)
    return lo + int(energy.argmin()) * frame + frame // 2


def plan_chunks(samples: np.ndarray, sample_rate: int, chunk_seconds: float, overlap_seconds: float) -> list[Chunk]:
    """Windows of at most ``chunk_seconds`` that overlap their neighbours by ``overlap_seconds``, each cut from the
    next at the quietest 20 ms of the middle half of their overlap; audio that fits one window is one chunk.

    Each window's frames are kept only between its cuts, so every kept frame was computed with at least a quarter of
    the overlap of audio on either side, and a word on a window boundary is whole in both windows.
    """
    n = len(samples)
    limit = max(int(chunk_seconds * sample_rate), sample_rate)
    overlap = min(int(overlap_seconds * sample_rate), limit // 2)
    if n <= limit:
        return [Chunk(0, n, 0, n)]
    windows = []
    start = 0
    while start + limit < n:
        windows.append((start, start + limit))
        start += limit - overlap
    windows.append((start, n))
    cuts = [0]
    for (_, end), (next_start, _) in itertools.pairwise(windows):
        span = end - next_start  # the overlap of the two windows
        cuts.append(_quietest(samples, next_start + span // 4, end - span // 4, sample_rate))
    cuts.append(n)
    return [Chunk(s, e, cuts[k], cuts[k + 1]) for k, (s, e) in enumerate(windows)]


def stitch(chunks: list[Chunk], log_probs: list[np.ndarray]) -> np.ndarray:
    """The frames of each chunk's ``(frames, vocab)`` log-probabilities between its cuts, joined in order.

    A cut at sample ``c`` of a window starting at ``s`` is frame ``round((c - s) / samples_per_frame)`` of it, the
    window's own frame rate, so consecutive windows hand over at the same instant.
    """
    if len(chunks) == 1:
        return log_probs[0]
    parts = []
    for chunk, lp in zip(chunks, log_probs, strict=True):
        per_frame = (chunk.end - chunk.start) / max(len(lp), 1)
        first = round((chunk.keep_from - chunk.start) / per_frame)
        last = len(lp) if chunk.keep_to == chunk.end else round((chunk.keep_to - chunk.start) / per_frame)
        parts.append(lp[first:last])
    return np.concatenate(parts)
