"""Export parity and artifact inference: masks on the input's grid, correct after inverting the transforms."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn
from vision_fixtures import write_nifti

from trident_core.artifact import load_artifact
from trident_core.errors import DataError
from trident_core.export import export_artifact
from trident_vision.defaults import make_phantom
from trident_vision.export import infer
from trident_vision.model import tiny_unet
from trident_vision.module import SegmentationModule
from trident_vision.transforms import make_preprocessing


class Threshold(nn.Module):
    """Logits of "scaled intensity above 0.5": a known answer to check the whole inference path."""

    out_channels = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([0.5 - x, x - 0.5], dim=1) * 20


def test_export_parity_and_dynamic_spatial_axes(tmp_path: Path) -> None:
    module = SegmentationModule(tiny_unet(1, 3), num_classes=3, class_names=["bg", "a", "b"], roi_size=(16, 16, 16),
                                preprocessing=make_preprocessing(spacing=(2.0, 2.0, 2.0)))
    result = export_artifact(module.export_spec(), tmp_path / "artifact", domain="vision")
    assert result.parity["onnx"]["max_abs_diff"] < 1e-4
    assert result.parity["torch_export"]["max_abs_diff"] < 1e-4
    artifact = load_artifact(tmp_path / "artifact")
    meta = artifact.domain_metadata
    assert meta["preprocessing"]["spacing"] == [2.0, 2.0, 2.0] and meta["roi_size"] == [16, 16, 16]
    assert meta["class_names"] == ["bg", "a", "b"] and meta["divisor"] == 4
    x = np.random.default_rng(0).normal(size=(3, 1, 24, 20, 12)).astype(np.float32)  # new multiples of 4
    with torch.no_grad():
        want = module.net.eval()(torch.from_numpy(x)).numpy()
    assert np.abs(artifact.run({"image": x})["logits"] - want).max() < 1e-4


def _known_answer_artifact(tmp_path: Path) -> Path:
    module = SegmentationModule(Threshold(), num_classes=2, class_names=["background", "object"],
                                roi_size=(32, 32, 32), preprocessing=make_preprocessing(spacing=(1.5, 1.5, 1.5)))
    return export_artifact(module.export_spec(), tmp_path / "artifact", domain="vision").path


def test_infer_writes_correct_masks_on_the_input_grid(tmp_path: Path) -> None:
    artifact = _known_answer_artifact(tmp_path)
    truths = {}
    for seed in (7, 8):  # oblique, flipped, anisotropic affines of different shapes
        _, label, affine = make_phantom(seed)
        truth = (label == 1).astype(np.uint8)
        image = np.where(truth == 1, 100.0, 10.0).astype(np.float32)
        write_nifti(tmp_path / "in" / f"case{seed}.nii.gz", image, affine)
        truths[f"case{seed}"] = (truth, affine)
    rows = infer(str(artifact), str(tmp_path / "in"), str(tmp_path / "out"), batch_size=2)
    assert len(rows) == 2
    for row in rows:
        name = Path(row["input"]).name.removesuffix(".nii.gz")
        truth, affine = truths[name]
        mask_img = nib.load(row["mask"])
        mask = np.asarray(mask_img.dataobj)
        assert mask.shape == truth.shape and row["shape"] == list(truth.shape)
        assert np.allclose(mask_img.affine, affine, atol=1e-5)
        dice = 2 * (mask * truth).sum() / (mask.sum() + truth.sum())
        assert dice > 0.9, (name, dice)
        expected_ml = truth.sum() * abs(np.linalg.det(affine[:3, :3])) / 1000
        assert row["volumes_ml"]["object"] == pytest.approx(expected_ml, rel=0.15)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["mask"] for r in summary] == [r["mask"] for r in rows]


def test_infer_checks_every_input_before_writing(tmp_path: Path) -> None:
    artifact = _known_answer_artifact(tmp_path)
    write_nifti(tmp_path / "in" / "a.nii.gz", np.ones((20, 20, 20), np.float32))
    write_nifti(tmp_path / "in" / "b.nii.gz", np.ones((20, 20), np.float32))
    with pytest.raises(DataError, match=r"b\.nii\.gz: image must be 3D"):
        infer(str(artifact), str(tmp_path / "in"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
