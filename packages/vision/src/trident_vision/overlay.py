"""A PNG of overlay slices (image | label | prediction), written with zlib only (no imaging library)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

# RGB per class index (background transparent); cycles beyond the table
_COLOURS = np.array([[0, 0, 0], [230, 60, 60], [60, 200, 80], [70, 120, 240], [240, 200, 40], [200, 80, 220],
                     [40, 210, 210]], dtype=np.float32)


def _png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 array as PNG."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _tint(gray: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    rgb = np.repeat(gray[..., None], 3, axis=2)
    colours = _COLOURS[1 + (mask.astype(int) - 1) % (len(_COLOURS) - 1)]
    fg = (mask > 0)[..., None]
    return np.where(fg, (1 - alpha) * rgb + alpha * colours, rgb)


def overlay_png(image: np.ndarray, label: np.ndarray, pred: np.ndarray, path: str | Path, scale: int = 3) -> Path:
    """Write the axial slice with the most labelled voxels as three panels: image, label, prediction.

    Args:
        image: ``(X, Y, Z)`` intensities.
        label: ``(X, Y, Z)`` class indices.
        pred: ``(X, Y, Z)`` class indices.
        path: PNG file to write.
        scale: Nearest-neighbour upscaling of each panel.
    """
    z = int(np.argmax((label > 0).sum(axis=(0, 1)))) if label.any() else image.shape[2] // 2
    img = image[:, :, z].astype(np.float32)
    lo, hi = np.percentile(img, [1, 99]) if img.size else (0.0, 1.0)
    gray = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1) * 255
    panels = [np.repeat(gray[..., None], 3, axis=2), _tint(gray, label[:, :, z]), _tint(gray, pred[:, :, z])]
    # array axis 0 runs left->right in RAS; show it as columns with anterior up
    panels = [np.rot90(p, k=1) for p in panels]
    gap = np.full((panels[0].shape[0], 2, 3), 255.0)
    strip = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    strip = np.kron(strip, np.ones((scale, scale, 1))) if scale > 1 else strip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_png_bytes(np.ascontiguousarray(strip.clip(0, 255).astype(np.uint8))))
    return path
