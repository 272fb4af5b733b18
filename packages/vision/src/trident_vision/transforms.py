"""MONAI dictionary transforms shared by training, evaluation and artifact inference.

The deterministic preprocessing is described by a plain dict (stored in the checkpoint and in the
artifact's ``metadata.json``) so that ``infer`` rebuilds exactly the transforms the model was trained on:

``{"orientation": "RAS", "spacing": [1.5, 1.5, 1.5], "intensity": {"mode": "percentile", "lower": 0.5,
"upper": 99.5} | {"mode": "window", "a_min": -175, "a_max": 250} | {"mode": "zscore"}, "crop_foreground": true,
"margin": 4}``

Intensity modes, as MONAI users configure them: ``window`` clips CT Hounsfield units to ``[a_min, a_max]`` and
scales them to [0, 1] (``ScaleIntensityRanged``); ``zscore`` normalises every MRI channel over its non-zero voxels
(``NormalizeIntensityd(nonzero=True, channel_wise=True)``); ``percentile`` scales robust percentiles to [0, 1].
:func:`intensity_mode` picks one from the datalist's ``modality`` unless the config sets it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trident_core.errors import ConfigError

INTENSITY_MODES = ("window", "zscore", "percentile")
# abdominal soft-tissue window of MONAI's CT tutorials (BTCV, Swin-UNETR); data.intensity_window sets another
DEFAULT_CT_WINDOW = (-175.0, 250.0)


def intensity_mode(modality: Sequence[str], intensity: str | None, intensity_window: Sequence[float] | None) -> str:
    """The intensity mode: ``intensity`` if set, else ``window`` when a window is given, else from the datalist's
    ``modality`` (every channel ``CT``: ``window``; any other, e.g. ``MRI``/``MR``/``T1w``: ``zscore``), else
    ``percentile`` (no modality known, as for the embedded datasets)."""
    if intensity is not None:
        if intensity not in INTENSITY_MODES:
            raise ConfigError(f"data.intensity must be one of {INTENSITY_MODES} (or null: from the datalist's "
                              f"modality), got {intensity!r}")
        return intensity
    if intensity_window is not None:
        return "window"
    if not modality:
        return "percentile"
    return "window" if all(m.strip().upper() == "CT" for m in modality) else "zscore"


def make_preprocessing(
    spacing: Sequence[float] = (1.5, 1.5, 1.5),
    orientation: str = "RAS",
    intensity_window: Sequence[float] | None = None,
    percentiles: Sequence[float] = (0.5, 99.5),
    crop_foreground: bool = True,
    margin: int = 4,
    intensity: str | None = None,
) -> dict[str, Any]:
    """Validate preprocessing values and return them as the JSON-able dict the transforms are built from.

    ``intensity`` is a mode of :data:`INTENSITY_MODES`; ``None`` means ``window`` when ``intensity_window`` is
    given, else ``percentile``. ``window`` without ``intensity_window`` uses :data:`DEFAULT_CT_WINDOW`.
    """
    if len(spacing) != 3 or any(float(s) <= 0 for s in spacing):
        raise ConfigError(f"data.spacing must be three positive voxel sizes in mm, got {list(spacing)}")
    if len(orientation) != 3 or not _valid_axcodes(orientation):
        raise ConfigError(f"data.orientation must be three axis codes like 'RAS' or 'LPS', got {orientation!r}")
    mode = intensity_mode((), intensity, intensity_window)
    if mode == "window":
        window = DEFAULT_CT_WINDOW if intensity_window is None else intensity_window
        if len(window) != 2 or float(window[0]) >= float(window[1]):
            raise ConfigError(f"data.intensity_window must be [min, max] with min < max, got {intensity_window}")
        scaling: dict[str, Any] = {"mode": "window", "a_min": float(window[0]), "a_max": float(window[1])}
    elif mode == "zscore":
        scaling = {"mode": "zscore"}
    else:
        lo, hi = (float(p) for p in percentiles)
        if not 0 <= lo < hi <= 100:
            raise ConfigError(f"data.percentiles must satisfy 0 <= lower < upper <= 100, got {list(percentiles)}")
        scaling = {"mode": "percentile", "lower": lo, "upper": hi}
    return {
        "orientation": orientation.upper(),
        "spacing": [float(s) for s in spacing],
        "intensity": scaling,
        "crop_foreground": bool(crop_foreground),
        "margin": int(margin),
    }


def _valid_axcodes(codes: str) -> bool:
    pairs = [set("LR"), set("AP"), set("SI")]
    used = [next((i for i, p in enumerate(pairs) if c in p), -1) for c in codes.upper()]
    return sorted(used) == [0, 1, 2]


def preprocess_transforms(pre: dict[str, Any], keys: Sequence[str] = ("image", "label"),
                          label_values: Sequence[int] | None = None) -> list[Any]:
    """Deterministic, invertible preprocessing: load, channel-first, orientation, spacing, intensity, crop.

    Args:
        pre: The preprocessing dict (:func:`make_preprocessing`).
        keys: ``image`` and optionally ``label``.
        label_values: The label value of each class (``[0, 1, 4]``): labels are mapped to class indices
            ``0..n-1`` before anything else; ``None`` or ``0..n-1`` leaves them as they are.
    """
    from monai.transforms import (
        CropForegroundd,
        EnsureChannelFirstd,
        EnsureTyped,
        LoadImaged,
        NormalizeIntensityd,
        Orientationd,
        ScaleIntensityRanged,
        ScaleIntensityRangePercentilesd,
        Spacingd,
    )

    keys = list(keys)
    modes = ["bilinear" if k == "image" else "nearest" for k in keys]
    ops: list[Any] = [
        LoadImaged(keys, reader="NibabelReader", image_only=True),
        EnsureChannelFirstd(keys),
        EnsureTyped(keys, dtype="float32", track_meta=True),
        *_label_map(keys, label_values),
        Orientationd(keys, axcodes=pre["orientation"], labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        Spacingd(keys, pixdim=pre["spacing"], mode=modes),
    ]
    intensity = pre["intensity"]
    foreground = _positive
    if intensity["mode"] == "window":
        ops.append(ScaleIntensityRanged("image", a_min=intensity["a_min"], a_max=intensity["a_max"],
                                        b_min=0.0, b_max=1.0, clip=True))
    elif intensity["mode"] == "zscore":
        ops.append(NormalizeIntensityd("image", nonzero=True, channel_wise=True))
        foreground = _nonzero  # z-scores below the mean are negative: the foreground is what is not zero
    else:
        ops.append(ScaleIntensityRangePercentilesd("image", lower=intensity["lower"], upper=intensity["upper"],
                                                   b_min=0.0, b_max=1.0, clip=True, channel_wise=True))
    if pre.get("crop_foreground", True):
        ops.append(CropForegroundd(keys, source_key="image", select_fn=foreground, margin=pre.get("margin", 4),
                                   allow_smaller=True))
    return ops


def _positive(image: Any) -> Any:
    return image > 0


def _nonzero(image: Any) -> Any:
    return image != 0


def _label_map(keys: Sequence[str], label_values: Sequence[int] | None) -> list[Any]:
    """MONAI's ``MapLabelValued`` from label values to class indices, when they differ."""
    from monai.transforms import MapLabelValued

    if "label" not in keys or label_values is None or list(label_values) == list(range(len(label_values))):
        return []
    return [MapLabelValued("label", orig_labels=list(label_values), target_labels=list(range(len(label_values))),
                           dtype="float32")]


def train_transforms(
    pre: dict[str, Any], roi_size: Sequence[int], num_samples: int, pos: float, neg: float, augment: bool,
    label_values: Sequence[int] | None = None,
) -> Any:
    """Preprocessing, padding to the ROI, positive/negative patch sampling and random augmentation."""
    from monai.transforms import (
        Compose,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandRotate90d,
        RandScaleIntensityd,
        RandShiftIntensityd,
        SpatialPadd,
    )

    keys = ["image", "label"]
    ops = [*preprocess_transforms(pre, keys, label_values), SpatialPadd(keys, spatial_size=list(roi_size))]
    # everything above is deterministic and cached; everything below runs every epoch
    ops.append(RandCropByPosNegLabeld(keys, label_key="label", spatial_size=list(roi_size), pos=pos, neg=neg,
                                      num_samples=num_samples, image_key="image", image_threshold=0.0))
    if augment:
        ops += [
            RandFlipd(keys, prob=0.5, spatial_axis=0),
            RandFlipd(keys, prob=0.5, spatial_axis=1),
            RandFlipd(keys, prob=0.5, spatial_axis=2),
            RandRotate90d(keys, prob=0.25, max_k=3, spatial_axes=(0, 1)),
            RandScaleIntensityd("image", factors=0.1, prob=0.5),
            RandShiftIntensityd("image", offsets=0.1, prob=0.5),
        ]
    return Compose(ops)


def eval_transforms(pre: dict[str, Any], with_label: bool = True, label_values: Sequence[int] | None = None) -> Any:
    """Deterministic preprocessing of whole volumes for validation, test and prediction."""
    from monai.transforms import Compose

    return Compose(preprocess_transforms(pre, ["image", "label"] if with_label else ["image"], label_values))
