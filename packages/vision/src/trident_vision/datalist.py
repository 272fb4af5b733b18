"""Reading and checking segmentation datasets on disk: Decathlon ``dataset.json`` datalists, folders of
``*_img.nii.gz`` / ``*_seg.nii.gz`` pairs, and the NIfTI files they name.

Every problem a user can cause raises :class:`~trident_core.errors.DataError` naming the file and the key.
Light: numpy, nibabel and json only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trident_core.errors import DataError

SPLITS = ("training", "validation", "test")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
# image/label pairs in a plain folder: <case>_img.nii.gz + <case>_seg.nii.gz (also _image/_label, _0000)
PAIR_PATTERNS = (("_img", "_seg"), ("_image", "_label"), ("_image", "_mask"), ("_img", "_mask"))


@dataclass
class Datalist:
    """A resolved dataset: class names and ``{"image": path, "label": path | None}`` entries per split."""

    path: Path
    labels: list[str]
    training: list[dict[str, str]] = field(default_factory=list)
    validation: list[dict[str, str]] = field(default_factory=list)
    test: list[dict[str, str]] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


def case_name(path: str | Path) -> str:
    """File name without the NIfTI suffix (``a/b/case_01.nii.gz`` -> ``case_01``)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _parse_labels(raw: Any, path: Path) -> list[str]:
    if not isinstance(raw, dict) or not raw:
        raise DataError("'labels' must be a non-empty mapping of class index to name, "
                        'e.g. {"0": "background", "1": "tumour"}', path=path, key="labels")
    try:
        indexed = {int(k): str(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise DataError(f"class indices must be integers, got keys {sorted(map(str, raw))}",
                        path=path, key="labels") from None
    if sorted(indexed) != list(range(len(indexed))):
        raise DataError(f"class indices must be 0..{len(indexed) - 1} without gaps, got {sorted(indexed)}",
                        path=path, key="labels")
    if len(indexed) < 2:
        raise DataError("at least two classes (background and one foreground) are needed",
                        path=path, key="labels")
    return [indexed[i] for i in range(len(indexed))]


def _resolve(root: Path, value: Any, path: Path, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"expected a file path string, got {value!r}", path=path, key=key)
    if "\x00" in value:
        raise DataError("path contains a NUL character", path=path, key=key)
    candidate = Path(value)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not candidate.is_absolute() and not resolved.is_relative_to(root.resolve()):
        raise DataError(f"relative path {value!r} escapes the dataset folder {root}; "
                        "keep relative paths inside it or give an absolute path", path=path, key=key)
    if not resolved.is_file():
        raise DataError(f"file not found: {resolved}", path=path, key=key)
    if not is_nifti(resolved):
        raise DataError(f"{resolved.name} is not a NIfTI file (.nii or .nii.gz)", path=path, key=key)
    return str(resolved)


def _parse_entry(root: Path, raw: Any, path: Path, key: str, need_label: bool) -> dict[str, str]:
    if isinstance(raw, str):  # Decathlon test entries are bare image paths
        raw = {"image": raw}
    if not isinstance(raw, dict):
        raise DataError(f"each entry must be an object with 'image' and 'label', got {type(raw).__name__}",
                        path=path, key=key)
    if "image" not in raw:
        raise DataError("entry has no 'image'", path=path, key=f"{key}.image")
    entry = {"image": _resolve(root, raw["image"], path, f"{key}.image")}
    if "label" in raw and raw["label"] is not None:
        entry["label"] = _resolve(root, raw["label"], path, f"{key}.label")
    elif need_label:
        raise DataError("entry has no 'label' (training and validation entries need one)",
                        path=path, key=f"{key}.label")
    return entry


def read_datalist(path: str | Path) -> Datalist:
    """Read a Medical Segmentation Decathlon style ``dataset.json``; paths resolve from its folder.

    Raises:
        DataError: unreadable or invalid JSON, missing ``labels``/``training``, a bad or missing entry or
            file, a path that escapes the dataset folder.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DataError("datalist not found", path=path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read datalist as UTF-8 text: {err}", path=path) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"invalid JSON: {err.msg}", path=path, line=err.lineno) from None
    if not isinstance(raw, dict):
        raise DataError("a datalist must be a JSON object with 'labels' and 'training'", path=path)
    if "labels" not in raw:
        raise DataError("missing 'labels' (class index -> name)", path=path, key="labels")
    labels = _parse_labels(raw["labels"], path)
    datalist = Datalist(path=path, labels=labels)
    root = path.parent
    for split in SPLITS:
        items = raw.get(split, [])
        if split == "training" and not items:
            raise DataError("missing or empty 'training' list", path=path, key="training")
        if not isinstance(items, list):
            raise DataError(f"'{split}' must be a list of entries", path=path, key=split)
        entries = [_parse_entry(root, item, path, f"{split}[{i}]", need_label=split != "test")
                   for i, item in enumerate(items)]
        setattr(datalist, split, entries)
    return datalist


def find_pairs(folder: str | Path) -> list[dict[str, str]]:
    """Image/label pairs in a plain folder (``<case>_img.nii.gz`` + ``<case>_seg.nii.gz`` and similar).

    Raises:
        DataError: no folder, no pairs, or an image without its label.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("image folder not found", path=folder)
    files = {case_name(p): p for p in sorted(folder.iterdir()) if is_nifti(p)}
    pairs = []
    for name, image in files.items():
        for img_tag, seg_tag in PAIR_PATTERNS:
            if name.endswith(img_tag):
                base = name[: -len(img_tag)]
                label = files.get(base + seg_tag)
                if label is None:
                    continue
                pairs.append({"image": str(image.resolve()), "label": str(label.resolve())})
                break
    if not pairs:
        raise DataError("no image/label pairs found; expected <case>_img.nii.gz with <case>_seg.nii.gz",
                        path=folder)
    return pairs


def load_volume(path: str | Path, what: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI file into ``(array, affine)``; every failure is a :class:`DataError` naming the file."""
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
        affine = np.asarray(img.affine, dtype=np.float64)
    except FileNotFoundError:
        raise DataError(f"{what} file not found", path=path) from None
    except Exception as err:  # nibabel raises many types for truncated/corrupt files
        raise DataError(f"cannot read {what} as NIfTI ({type(err).__name__}: {err})", path=path) from None
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise DataError(f"{what} has unsupported voxel type {data.dtype}; expected real numbers", path=path)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataError(f"{what} has a degenerate or non-finite affine", path=path)
    return data, affine


def check_image(path: str | Path, in_channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load an image and check it is a 3D volume (or 3D with channels in the 4th axis) of finite values."""
    data, affine = load_volume(path, "image")
    if data.ndim not in (3, 4) or (data.ndim == 4 and data.shape[3] > 16):
        raise DataError(f"image must be 3D (X, Y, Z) or 3D with channels last, got shape {data.shape}", path=path)
    if min(data.shape[:3]) < 2:
        raise DataError(f"image has an empty or flat spatial axis: shape {data.shape}", path=path)
    channels = 1 if data.ndim == 3 else data.shape[3]
    if in_channels is not None and channels != in_channels:
        raise DataError(f"image has {channels} channel(s), the model expects {in_channels}", path=path)
    if not np.all(np.isfinite(data)):
        raise DataError("image contains NaN or infinite values", path=path)
    if np.abs(data).max() > 1e30:
        raise DataError("image values exceed 1e30; the file is probably corrupt", path=path)
    return data, affine


def check_case(entry: dict[str, str], num_classes: int, in_channels: int | None = None) -> None:
    """Check one image/label pair: readable, 3D, same grid (shape and affine), labels within the classes."""
    image, affine = check_image(entry["image"], in_channels)
    if "label" not in entry:
        return
    label_path = entry["label"]
    label, label_affine = load_volume(label_path, "label")
    if label.ndim == 4 and label.shape[3] == 1:
        label = label[..., 0]
    if label.ndim != 3:
        raise DataError(f"label must be a 3D volume, got shape {label.shape}", path=label_path)
    if label.shape != image.shape[:3]:
        raise DataError(f"label shape {label.shape} differs from image shape {image.shape[:3]} "
                        f"({entry['image']})", path=label_path)
    scale = max(1.0, float(np.abs(affine).max()))
    if not np.allclose(label_affine, affine, atol=1e-3 * scale):
        raise DataError(f"label affine differs from the image affine ({entry['image']}); "
                        "resample the label onto the image grid", path=label_path)
    if not np.all(np.isfinite(label)):
        raise DataError("label contains NaN or infinite values", path=label_path)
    values = np.unique(label)
    bad = [v for v in values.tolist() if v != math.floor(v) or not 0 <= v < num_classes]
    if bad:
        raise DataError(f"label values {bad[:10]} are outside the declared classes 0..{num_classes - 1}",
                        path=label_path)


def image_channels(path: str | Path) -> int:
    """Channels of an image from its header only (4D NIfTI: the 4th axis)."""
    import nibabel as nib

    try:
        shape = nib.load(str(path)).shape
    except Exception as err:
        raise DataError(f"cannot read image header ({type(err).__name__}: {err})", path=path) from None
    return 1 if len(shape) == 3 else int(shape[3])
