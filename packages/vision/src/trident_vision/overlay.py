"""Validation overlays: a few axial slices with the label and the prediction as W&B masks (``wandb.Image`` with
``masks``, which the W&B UI toggles and colours per class), and the same view as a PNG strip on disk for runs
without W&B (image | label | prediction, written by Pillow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# RGB per class index (background transparent); cycles beyond the table
_COLOURS = np.array([[0, 0, 0], [230, 60, 60], [60, 200, 80], [70, 120, 240], [240, 200, 40], [200, 80, 220],
                     [40, 210, 210]], dtype=np.float32)


def overlay_slices(label: np.ndarray, count: int = 3) -> list[int]:
    """Axial slices worth showing: the one with the most labelled voxels and the quartiles of the labelled range
    (the middle slice when nothing is labelled); at most ``count``, in order."""
    per_slice = (label > 0).sum(axis=(0, 1))
    if not per_slice.any():
        return [label.shape[2] // 2]
    labelled = np.flatnonzero(per_slice)
    picks = {int(np.argmax(per_slice))}
    picks |= {int(labelled[round(q * (len(labelled) - 1))]) for q in (0.25, 0.75)}
    return sorted(picks)[:count]


def _view(volume: np.ndarray, z: int) -> np.ndarray:
    # array axis 0 runs left->right in RAS; show it as columns with anterior up
    return np.ascontiguousarray(np.rot90(volume[:, :, z], k=1))


def _gray(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, [1, 99]) if image.size else (0.0, 1.0)
    return (np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def wandb_overlays(image: np.ndarray, label: np.ndarray, pred: np.ndarray, class_names: list[str],
                   count: int = 3) -> list[Any]:
    """``wandb.Image`` per slice of :func:`overlay_slices`: the image with ``ground_truth`` and ``prediction`` masks.

    Args:
        image: ``(X, Y, Z)`` intensities.
        label: ``(X, Y, Z)`` class indices.
        pred: ``(X, Y, Z)`` class indices.
        class_names: Name of every class index (shown by W&B).
        count: Most slices.
    """
    import wandb

    classes = dict(enumerate(class_names))
    images = []
    for z in overlay_slices(label, count):
        masks = {"ground_truth": {"mask_data": _view(label, z).astype(np.uint8), "class_labels": classes},
                 "prediction": {"mask_data": _view(pred, z).astype(np.uint8), "class_labels": classes}}
        images.append(wandb.Image(_gray(_view(image, z).astype(np.float32)), masks=masks, caption=f"axial slice {z}"))
    return images


def _tint(gray: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    rgb = np.repeat(gray[..., None].astype(np.float32), 3, axis=2)
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
    from PIL import Image

    z = int(np.argmax((label > 0).sum(axis=(0, 1)))) if label.any() else image.shape[2] // 2
    gray = _gray(_view(image, z).astype(np.float32))
    panels = [_tint(gray, np.zeros_like(gray)), _tint(gray, _view(label, z)), _tint(gray, _view(pred, z))]
    gap = np.full((gray.shape[0], 2, 3), 255.0)
    strip = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1).clip(0, 255).astype(np.uint8)
    picture = Image.fromarray(strip)
    if scale > 1:
        picture = picture.resize((strip.shape[1] * scale, strip.shape[0] * scale), Image.Resampling.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path
