"""One mask rule: the test step (logits, preprocessed grid) and artifact inference (probabilities resampled to the
input grid) both label voxels with ``segmentation_mask``, so on the same scores they give the same mask."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from lightning.pytorch import Trainer
from torch import nn
from vision_fixtures import write_nifti

from trident_core.export import export_artifact
from trident_vision.data import SegmentationDataModule
from trident_vision.export import infer, segmentation_mask
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


def test_test_step_and_infer_give_the_same_mask(tmp_path: Path) -> None:
    # an identity grid at the training spacing, no crop: the preprocessed grid is the input grid, so the only
    # difference between the paths is logits (torch) vs resampled probabilities (onnxruntime)
    image = np.random.default_rng(0).uniform(0, 100, (37, 29, 23)).astype(np.float32)
    write_nifti(tmp_path / "img.nii.gz", image)
    module = SegmentationModule(_intensity_bands(), num_classes=3, class_names=["bg", "low", "high"],
                                preprocessing=make_preprocessing(spacing=(1.0, 1.0, 1.0), crop_foreground=False),
                                roi_size=(16, 16, 16), overlays=False)
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
