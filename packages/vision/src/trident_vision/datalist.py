"""Reading and checking segmentation datasets on disk: Decathlon ``dataset.json`` datalists, folders of
``*_img.nii.gz`` / ``*_seg.nii.gz`` pairs, and the NIfTI files they name.

Every problem a user can cause raises :class:`~trident_core.errors.DataError` naming the file and the key.
Light: numpy, nibabel and json only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trident_core.errors import DataError

SPLITS = ("training", "validation", "test")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
# image/label pairs in a plain folder: <case>_img.nii.gz + <case>_seg.nii.gz (also _image/_label, _0000)
PAIR_PATTERNS = (("_img", "_seg"), ("_image", "_label"), ("_image", "_mask"), ("_img", "_mask"))


# an entry's image: one file (3D, or 4D with channels last) or one 3D file per modality, stacked as channels
ImageSource = str | Path | Sequence[str | Path]


@dataclass
class Datalist:
    """A resolved dataset: class names and ``{"image": path | [paths], "label": path}`` entries per split.

    Attributes:
        label_values: The label value of each class in the files (``[0, 1, 4]`` for labels ``0, 1, 4``); class
            ``i`` is trained as index ``i`` and written back as ``label_values[i]``. Empty means ``0..n-1``.
        modality: Channel names from the datalist's ``modality`` (empty when it has none).
    """

    path: Path
    labels: list[str]
    training: list[dict[str, Any]] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)
    test: list[dict[str, Any]] = field(default_factory=list)
    label_values: list[int] = field(default_factory=list)
    modality: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def values(self) -> list[int]:
        """Label value of every class index (``label_values`` or ``0..n-1``)."""
        return self.label_values or list(range(self.num_classes))


def is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


def case_name(path: str | Path) -> str:
    """File name without the NIfTI suffix (``a/b/case_01.nii.gz`` -> ``case_01``)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _parse_labels(raw: Any, path: Path) -> tuple[list[str], list[int]]:
    """Class names and label values in value order; values need not be contiguous (``0, 1, 4``)."""
    if not isinstance(raw, dict) or not raw:
        raise DataError("'labels' must be a non-empty mapping of label value to name, "
                        'e.g. {"0": "background", "1": "tumour"}', path=path, key="labels")
    try:
        indexed = {int(k): str(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise DataError(f"label values must be integers, got keys {sorted(map(str, raw))}",
                        path=path, key="labels") from None
    values = sorted(indexed)
    if len(indexed) < 2:
        raise DataError("at least two classes (background and one foreground) are needed",
                        path=path, key="labels")
    # padding, cropping and resampling fill with 0, so 0 must be a class (the background)
    if values[0] != 0 or values[-1] > 65535:
        raise DataError(f"label values must include 0 (background) and lie in 0..65535, got {values}",
                        path=path, key="labels")
    return [indexed[v] for v in values], values


def _parse_modality(raw: Any, path: Path) -> list[str]:
    """Channel names of Decathlon's ``modality`` (``{"0": "FLAIR", "1": "T1w"}``), in channel order."""
    if raw is None:
        return []
    if isinstance(raw, dict) and raw:
        try:
            indexed = {int(k): str(v) for k, v in raw.items()}
        except (TypeError, ValueError):
            indexed = {}
        if sorted(indexed) == list(range(len(raw))):
            return [indexed[i] for i in range(len(indexed))]
    raise DataError(f'\'modality\' must map channel indices 0..n-1 to names, e.g. {{"0": "CT"}}, got {raw!r}',
                    path=path, key="modality")


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


def _parse_entry(root: Path, raw: Any, path: Path, key: str, need_label: bool) -> dict[str, Any]:
    if isinstance(raw, str | list):  # Decathlon test entries are bare image paths
        raw = {"image": raw}
    if not isinstance(raw, dict):
        raise DataError(f"each entry must be an object with 'image' and 'label', got {type(raw).__name__}",
                        path=path, key=key)
    if "image" not in raw:
        raise DataError("entry has no 'image'", path=path, key=f"{key}.image")
    image = raw["image"]
    if isinstance(image, list):  # one file per modality
        if not image:
            raise DataError("'image' is an empty list; give one file per modality", path=path, key=f"{key}.image")
        resolved: ImageSource = [_resolve(root, v, path, f"{key}.image[{i}]") for i, v in enumerate(image)]
    else:
        resolved = _resolve(root, image, path, f"{key}.image")
    entry: dict[str, Any] = {"image": resolved}
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
    labels, values = _parse_labels(raw["labels"], path)
    datalist = Datalist(path=path, labels=labels, label_values=values,
                        modality=_parse_modality(raw.get("modality"), path))
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


def _load_channels(source: ImageSource) -> tuple[np.ndarray, np.ndarray, Path]:
    """One image file, or one 3D file per modality stacked as channels last (same grid required)."""
    if isinstance(source, str | Path):
        data, affine = load_volume(source, "image")
        return data, affine, Path(source)
    first = Path(source[0])
    volumes, affines = zip(*(load_volume(item, "image") for item in source), strict=True)
    for item, data, affine in zip(source, volumes, affines, strict=True):
        if data.ndim != 3:
            raise DataError(f"a per-modality image must be 3D, got shape {data.shape}", path=item)
        if data.shape != volumes[0].shape or not _same_affine(affine, affines[0]):
            raise DataError(f"modality files differ in shape or affine from {first} "
                            f"({data.shape} vs {volumes[0].shape}); resample them onto one grid", path=item)
    return np.stack(volumes, axis=-1), affines[0], first


def _same_affine(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.allclose(a, b, atol=1e-3 * max(1.0, float(np.abs(b).max()))))


def check_image(source: ImageSource, in_channels: int | None = None,
                expected_from: str = "the model") -> tuple[np.ndarray, np.ndarray]:
    """Load an image and check it is a 3D volume (or 3D with channels in the 4th axis) of finite values.

    Args:
        source: One NIfTI file or a list of 3D files, one per modality (stacked as channels).
        in_channels: Channels required, if known.
        expected_from: Who requires them, for the message (``"the model"``, ``"dataset.json's modality"``).

    Returns:
        ``(data, affine)``: data with channels last when there are several.
    """
    data, affine, path = _load_channels(source)
    if data.ndim not in (3, 4) or (data.ndim == 4 and data.shape[3] > 16):
        raise DataError(f"image must be 3D (X, Y, Z) or 3D with channels last, got shape {data.shape}; "
                        "a 2D image cannot go through a 3D model", path=path)
    if min(data.shape[:3]) < 2:
        raise DataError(f"image has an empty or flat spatial axis: shape {data.shape}", path=path)
    channels = 1 if data.ndim == 3 else data.shape[3]
    if in_channels is not None and channels != in_channels:
        raise DataError(f"image has {channels} channel(s), {expected_from} expects {in_channels}", path=path)
    if not np.all(np.isfinite(data)):
        raise DataError("image contains NaN or infinite values", path=path)
    if np.abs(data).max() > 1e30:
        raise DataError("image values exceed 1e30; the file is probably corrupt", path=path)
    return data, affine


def check_case(entry: dict[str, Any], num_classes: int, in_channels: int | None = None,
               label_values: list[int] | None = None, expected_from: str = "the model") -> set[int]:
    """Check one image/label pair: readable, 3D, same grid (shape and affine), labels within the classes.

    Args:
        entry: ``{"image": path | [paths], "label": path}`` (no label: the image alone is checked).
        num_classes: Classes with background (allowed label values ``0..num_classes-1`` unless given).
        in_channels: Image channels required.
        label_values: The allowed label values (the datalist's ``labels`` keys).
        expected_from: Who requires ``in_channels``, for the message.

    Returns:
        The label values present (empty without a label): ``{0}`` is an empty (background-only) label.
    """
    image, affine = check_image(entry["image"], in_channels, expected_from)
    if "label" not in entry:
        return set()
    label_path = entry["label"]
    image_name = entry["image"] if isinstance(entry["image"], str) else entry["image"][0]
    label, label_affine = load_volume(label_path, "label")
    if label.ndim == 4 and label.shape[3] == 1:
        label = label[..., 0]
    if label.ndim != 3:
        raise DataError(f"label must be a 3D volume, got shape {label.shape}", path=label_path)
    if label.shape != image.shape[:3]:
        raise DataError(f"label shape {label.shape} differs from image shape {image.shape[:3]} "
                        f"({image_name})", path=label_path)
    if not _same_affine(label_affine, affine):
        raise DataError(f"label affine differs from the image affine ({image_name}); "
                        "resample the label onto the image grid", path=label_path)
    if not np.all(np.isfinite(label)):
        raise DataError("label contains NaN or infinite values", path=label_path)
    allowed = set(label_values if label_values is not None else range(num_classes))
    values = np.unique(label).tolist()
    bad = [v for v in values if v != math.floor(v) or int(v) not in allowed]
    if bad:
        raise DataError(f"label values {bad[:10]} are outside the declared classes {sorted(allowed)} "
                        "(dataset.json 'labels')", path=label_path)
    return {int(v) for v in values}


def image_channels(source: ImageSource) -> int:
    """Channels of an image from its header only (4D NIfTI: the 4th axis; a list: one per file)."""
    import nibabel as nib

    if not isinstance(source, str | Path):  # one file per modality
        return len(source)
    try:
        shape = nib.load(str(source)).shape
    except Exception as err:
        raise DataError(f"cannot read image header ({type(err).__name__}: {err})", path=source) from None
    return 1 if len(shape) == 3 else int(shape[3])
