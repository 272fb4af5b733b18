"""Transforms keep image and label aligned, reorient to RAS and resample to the configured spacing."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.utils import set_determinism
from vision_fixtures import write_nifti

from trident_core.errors import ConfigError
from trident_vision.defaults import make_phantom
from trident_vision.transforms import eval_transforms, make_preprocessing, train_transforms


def _aligned_case(tmp_path: Path, seed: int) -> dict[str, str]:
    """A phantom whose image is exactly determined by its label (no noise, no bias): misalignment shows."""
    _, label, affine = make_phantom(seed)
    image = np.choose(label, [10.0, 100.0, 50.0]).astype(np.float32)
    return {"image": str(write_nifti(tmp_path / f"img{seed}.nii.gz", image, affine)),
            "label": str(write_nifti(tmp_path / f"seg{seed}.nii.gz", label, affine))}


def _agreement(image: np.ndarray, label: np.ndarray) -> float:
    """Share of class-1 voxels brighter than half way between background (0) and class 1 (1) after scaling."""
    inside = label == 1
    return float((image[inside] > 0.5).mean())


@pytest.mark.parametrize("seed", [3, 11])
def test_eval_transforms_align_and_reorient(tmp_path: Path, seed: int) -> None:
    pre = make_preprocessing(spacing=(1.5, 1.5, 1.5), crop_foreground=True)
    data = eval_transforms(pre)(_aligned_case(tmp_path, seed))
    image, label = data["image"], data["label"]
    assert image.shape == label.shape
    affine = image.affine.numpy()
    assert np.allclose(np.linalg.norm(affine[:3, :3], axis=0), 1.5, atol=1e-3)  # resampled to the spacing
    assert nib.aff2axcodes(affine) == ("R", "A", "S")
    assert np.allclose(affine, label.affine.numpy())
    assert _agreement(image[0].numpy(), label[0].numpy()) > 0.97
    assert set(np.unique(label.numpy()).tolist()) <= {0.0, 1.0, 2.0}


def test_train_transforms_keep_patches_aligned(tmp_path: Path) -> None:
    set_determinism(seed=0)
    pre = make_preprocessing(spacing=(1.5, 1.5, 1.5))
    transform = train_transforms(pre, roi_size=(24, 24, 24), num_samples=4, pos=1.0, neg=0.0, augment=True)
    patches = transform(_aligned_case(tmp_path, 5))
    set_determinism(seed=None)
    assert len(patches) == 4
    for patch in patches:
        assert tuple(patch["image"].shape) == (1, 24, 24, 24) == tuple(patch["label"].shape)
        label = patch["label"][0].numpy()
        assert (label == 1).sum() > 100  # the phantom fits in a patch centred on foreground: class 1 is in each
        # intensity augmentation shifts/scales by up to 10%: class 1 still the brightest
        assert _agreement(patch["image"][0].numpy(), label) > 0.85


def test_intensity_window(tmp_path: Path) -> None:
    pre = make_preprocessing(intensity_window=(0.0, 100.0), crop_foreground=False)
    image = eval_transforms(pre, with_label=False)({"image": _aligned_case(tmp_path, 2)["image"]})["image"]
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"spacing": (1.0, 0.0, 1.0)}, "spacing"), ({"orientation": "RAX"}, "orientation"),
     ({"intensity_window": (5.0, 1.0)}, "intensity_window"), ({"percentiles": (50.0, 10.0)}, "percentiles")],
)
def test_bad_preprocessing_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_preprocessing(**kwargs)


@pytest.mark.parametrize(("modality", "intensity", "window", "mode"), [
    (["CT"], None, None, "window"),
    (["ct", "CT"], None, None, "window"),
    (["MRI"], None, None, "zscore"),
    (["MR"], None, None, "zscore"),
    (["FLAIR", "T1w", "t1gd", "T2w"], None, None, "zscore"),
    (["CT", "PET"], None, None, "zscore"),
    ([], None, None, "percentile"),  # no modality known (a folder of pairs, the embedded data): as before
    (["CT"], "percentile", None, "percentile"),  # the config wins
    (["MR"], None, (0.0, 500.0), "window"),
])
def test_intensity_mode_from_modality_unless_configured(modality, intensity, window, mode) -> None:
    from trident_vision.transforms import intensity_mode

    assert intensity_mode(modality, intensity, window) == mode


def test_unknown_intensity_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"data.intensity must be one of \('window', 'zscore', 'percentile'\)"):
        make_preprocessing(intensity="hu")


def _datalist(tmp_path: Path, image: np.ndarray, label: np.ndarray, affine: np.ndarray, modality: dict) -> Path:
    import json

    write_nifti(tmp_path / "img.nii.gz", image, affine)
    write_nifti(tmp_path / "seg.nii.gz", label, affine)
    entry = {"image": "img.nii.gz", "label": "seg.nii.gz"}
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"labels": {"0": "background", "1": "a", "2": "b"}, "modality": modality,
                                "training": [entry], "validation": [entry]}))
    return path


def test_ct_is_clipped_to_the_window_and_scaled(tmp_path: Path) -> None:
    from trident_vision.data import SegmentationDataModule

    _, label, affine = make_phantom(4)
    hu = np.choose(label, [-1000.0, 60.0, 400.0]).astype(np.float32)  # air, soft tissue, bone-bright
    data = SegmentationDataModule(datalist=str(_datalist(tmp_path, hu, label, affine, {"0": "CT"})), cache="none")
    assert data.preprocessing["intensity"] == {"mode": "window", "a_min": -175.0, "a_max": 250.0}
    out = eval_transforms(data.preprocessing)({"image": str(tmp_path / "img.nii.gz"),
                                               "label": str(tmp_path / "seg.nii.gz")})
    image, seg = out["image"].numpy()[0], out["label"].numpy()[0]
    inner = np.isin(seg, [1, 2])  # away from edges, where resampling blends classes
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert np.median(image[seg == 1]) == pytest.approx((60 + 175) / 425, abs=1e-3)
    assert np.median(image[seg == 2]) == pytest.approx(1.0)  # 400 HU is clipped to the window's top
    assert inner.any()


def test_mri_is_z_scored_per_channel_over_the_foreground(tmp_path: Path) -> None:
    from trident_vision.data import SegmentationDataModule

    # a body (100) in air (exactly 0) with a small bright structure (300, class 1) at one end and a darker one
    # (60, class 2) at the other: most of the body, and all of class 2, has negative z-scores
    x, y, z = np.indices((60, 50, 20)).astype(float)
    body = ((x - 30) / 28) ** 2 + ((y - 25) / 22) ** 2 + ((z - 10) / 9) ** 2 <= 1
    label = np.zeros(body.shape, np.uint8)
    label[(((x - 12) / 5) ** 2 + ((y - 25) / 5) ** 2 + ((z - 10) / 4) ** 2 <= 1)] = 1
    label[(((x - 48) / 6) ** 2 + ((y - 25) / 6) ** 2 + ((z - 10) / 4) ** 2 <= 1)] = 2
    t1 = np.where(body, np.choose(label, [100.0, 300.0, 60.0]), 0.0)
    two = np.stack([t1, np.where(body, 5 * t1 + 1000, 0.0)], axis=-1).astype(np.float32)
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    path = _datalist(tmp_path, two, label, affine, {"0": "T1", "1": "T2"})
    data = SegmentationDataModule(datalist=str(path), cache="none", spacing=(1.0, 1.0, 2.5))
    assert data.in_channels == 2 and data.preprocessing["intensity"] == {"mode": "zscore"}
    out = eval_transforms(data.preprocessing)({"image": str(tmp_path / "img.nii.gz"),
                                               "label": str(tmp_path / "seg.nii.gz")})
    image_out, seg = out["image"].numpy(), out["label"].numpy()[0]
    for channel in image_out:  # each channel on its own scale: mean 0, sd 1 over its non-zero voxels
        inside = channel[channel != 0]
        assert inside.mean() == pytest.approx(0.0, abs=1e-3) and inside.std() == pytest.approx(1.0, abs=1e-3)
    assert (image_out[0][seg == 2] < 0).all()
    # the foreground crop (non-zero after z-scoring) keeps every labelled voxel
    assert [(seg == c).sum() for c in (1, 2)] == [(label == c).sum() for c in (1, 2)]


def test_anisotropic_mask_keeps_its_volume_when_resampled(tmp_path: Path) -> None:
    """0.8 x 0.8 x 5 mm voxels (an oblique affine) to 1 mm and to 1.5 mm: a mask's volume in mL within 3%."""
    shape = (100, 100, 16)
    direction = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # axes swapped and flipped
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag([0.8, 0.8, 5.0])
    affine[:3, 3] = [40.0, -40.0, -40.0]
    idx = np.indices(shape).reshape(3, -1).astype(float)
    world = (affine[:3, :3] @ idx + affine[:3, 3:4]).reshape(3, *shape)
    label = (((world[0] / 25) ** 2 + (world[1] / 18) ** 2 + (world[2] / 30) ** 2) <= 1).astype(np.uint8)
    image = np.where(label > 0, 100.0, 50.0).astype(np.float32)
    case = {"image": str(write_nifti(tmp_path / "img.nii.gz", image, affine)),
            "label": str(write_nifti(tmp_path / "seg.nii.gz", label, affine))}
    truth_ml = label.sum() * 0.8 * 0.8 * 5.0 / 1000
    assert truth_ml == pytest.approx(4 / 3 * np.pi * 25 * 18 * 30 / 1000, rel=0.05)  # the ellipsoid, ~56.5 mL
    for spacing in (1.0, 1.5):
        pre = make_preprocessing(spacing=(spacing,) * 3, crop_foreground=False)
        seg = eval_transforms(pre)(case)["label"].numpy()
        assert set(np.unique(seg).tolist()) == {0.0, 1.0}  # nearest: still labels, no blends
        assert (seg == 1).sum() * spacing**3 / 1000 == pytest.approx(truth_ml, rel=0.03)
