"""One mask rule: the test step (logits, preprocessed grid) and artifact inference (probabilities resampled to the
input grid) both label voxels with ``segmentation_mask``, so on the same scores they give the same mask."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn
from vision_fixtures import write_nifti

from trident_core.export import export_artifact
from trident_vision.data import SegmentationDataModule
from trident_vision.export import flip_averaged, infer, segmentation_mask
from trident_vision.module import SegmentationModule
from trident_vision.transforms import make_preprocessing


def test_logits_and_their_probabilities_give_one_uint8_mask() -> None:
    logits = torch.randn(2, 4, 5, 6, 7, generator=torch.Generator().manual_seed(0)) * 5
    logits[0, :, 0, 0, 0] = torch.tensor([1.0, 3.0, 3.0, 0.0])  # a tie goes to the lower class
    mask = segmentation_mask(logits)
    assert mask.dtype == torch.uint8 and mask.shape == (2, 5, 6, 7) and mask[0, 0, 0, 0] == 1
    assert torch.equal(mask, segmentation_mask(torch.softmax(logits, dim=1)))
    assert torch.equal(mask[1], segmentation_mask(logits[1]))  # one volume, channel-first, as infer passes it
    assert set(mask.unique().tolist()) == {0, 1, 2, 3}


def _intensity_bands() -> nn.Module:
    """Per-voxel logits of three intensity bands (scaled x < 0.3, 0.3-0.7, > 0.7): every voxel near a band edge
    has two close logits, so a different rule in either path would move voxels."""
    net = nn.Conv3d(1, 3, kernel_size=1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([-10.0, 0.0, 10.0]).view(3, 1, 1, 1, 1))
        net.bias.copy_(torch.tensor([3.0, 0.0, -7.0]))
    return net


ALL_ON = {"largest_component": True, "fill_holes": True, "tta_flips": True}


@pytest.mark.parametrize("postprocess", [None, ALL_ON], ids=["argmax", "all-postprocessing"])
def test_test_step_and_infer_give_the_same_mask(tmp_path: Path, postprocess: dict | None) -> None:
    # an identity grid at the training spacing, no crop: the preprocessed grid is the input grid, so the only
    # difference between the paths is logits (torch) vs resampled probabilities (onnxruntime)
    image = np.random.default_rng(0).uniform(0, 100, (37, 29, 23)).astype(np.float32)
    write_nifti(tmp_path / "img.nii.gz", image)
    module = SegmentationModule(_intensity_bands(), num_classes=3, class_names=["bg", "low", "high"],
                                preprocessing=make_preprocessing(spacing=(1.0, 1.0, 1.0), crop_foreground=False),
                                roi_size=(16, 16, 16), overlays=False, postprocess=postprocess)
    artifact = export_artifact(module.export_spec(), tmp_path / "artifact", domain="vision").path
    rows = infer(str(artifact), str(tmp_path / "img.nii.gz"), str(tmp_path / "pred"))
    mask = np.asarray(nib.load(rows[0]["mask"]).dataobj)
    assert mask.shape == image.shape and set(np.unique(mask).tolist()) == {0, 1, 2}

    # the artifact's mask is the label of a test run: Dice 1 for both classes iff the test step labels every
    # voxel the same
    write_nifti(tmp_path / "seg.nii.gz", mask)
    entry = {"image": "img.nii.gz", "label": "seg.nii.gz"}
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "bg", "1": "low", "2": "high"},
                                                       "training": [entry], "validation": [entry],
                                                       "test": [entry]}))
    data = SegmentationDataModule(datalist=str(tmp_path / "dataset.json"), spacing=(1.0, 1.0, 1.0),
                                  crop_foreground=False, roi_size=(16, 16, 16), cache="none", batch_size=1)
    assert data.preprocessing == module.preprocessing
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path / "run")
    metrics = trainer.test(module, datamodule=data, verbose=False)[0]
    assert metrics["test/dice_low"] == 1.0 and metrics["test/dice_high"] == 1.0, metrics


def _scores(mask: np.ndarray, num_classes: int = 3) -> torch.Tensor:
    """One-hot logits ``[C, D, H, W]`` of a class-index mask."""
    return torch.nn.functional.one_hot(torch.as_tensor(mask).long(), num_classes).permute(3, 0, 1, 2).float()


def test_each_postprocessing_option_changes_a_crafted_mask_as_specified() -> None:
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[2:12, 2:12, 2:12] = 1  # class 1: a cube with a hole in its middle...
    mask[6:8, 6:8, 6:8] = 0
    mask[16:18, 16:18, 16:18] = 1  # ...and a stray island
    mask[14:19, 2:7, 2:7] = 2  # class 2: one solid block (left alone by both)
    scores = _scores(mask)
    assert np.array_equal(segmentation_mask(scores).numpy(), mask)  # off by default

    kept = segmentation_mask(scores, {"largest_component": True}).numpy()
    expected = mask.copy()
    expected[16:18, 16:18, 16:18] = 0  # the island is gone, the hole stays
    assert np.array_equal(kept, expected)

    filled = segmentation_mask(scores, {"fill_holes": True}).numpy()
    expected = mask.copy()
    expected[6:8, 6:8, 6:8] = 1  # the hole is filled, the island stays
    assert np.array_equal(filled, expected)

    both = segmentation_mask(scores[None].repeat(2, 1, 1, 1, 1), {"largest_component": True, "fill_holes": True})
    expected[16:18, 16:18, 16:18] = 0
    assert both.shape == (2, 20, 20, 20) and all(np.array_equal(m, expected) for m in both.numpy())  # per volume


def test_flip_averaging_averages_probabilities_over_flips() -> None:
    images = torch.randn(1, 1, 6, 7, 8, generator=torch.Generator().manual_seed(0))
    shifted = nn.Conv3d(1, 2, kernel_size=3, padding=1)  # not flip-equivariant: its flips differ
    torch.manual_seed(0)
    with torch.no_grad():
        probs = flip_averaged(shifted, images)
        expected = sum(torch.softmax(shifted(images.flip(a) if a else images), 1).flip(a) if a else
                       torch.softmax(shifted(images), 1) for a in (0, 2, 3, 4)) / 4
        assert torch.allclose(probs, expected, atol=1e-6)
        assert not torch.allclose(probs, torch.softmax(shifted(images), 1), atol=1e-3)
        pointwise = _intensity_bands()  # a 1x1x1 network commutes with flips: averaging changes nothing
        assert torch.allclose(flip_averaged(pointwise, images), torch.softmax(pointwise(images), 1), atol=1e-6)
