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
        if (label == 1).sum() > 20:
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
