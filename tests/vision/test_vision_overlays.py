"""Validation overlays: W&B-native images with ground-truth and prediction masks, in a real offline W&B run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wandb
from PIL import Image

from trident_core.cli import run_domain
from trident_vision.cli import DOMAIN
from trident_vision.overlay import overlay_slices, wandb_overlays


def test_slices_follow_the_label() -> None:
    label = np.zeros((8, 8, 20), np.uint8)
    label[2:6, 2:6, 4:13] = 1
    label[3:5, 3:5, 9] = 2  # no more voxels than its neighbours: the first slice of the maximum wins
    assert overlay_slices(label) == [4, 6, 10]
    assert overlay_slices(np.zeros((8, 8, 20), np.uint8)) == [10]


def test_masks_carry_label_prediction_and_class_names() -> None:
    label = np.zeros((6, 7, 5), np.uint8)
    label[1:4, 2:5, 2] = 1
    pred = np.where(label > 0, 2, 0).astype(np.uint8)
    images = wandb_overlays(np.random.default_rng(0).normal(size=label.shape), label, pred, ["bg", "a", "b"])
    assert len(images) == 1 and isinstance(images[0], wandb.Image)
    masks = images[0]._masks
    assert set(masks) == {"ground_truth", "prediction"}
    assert np.array_equal(masks["ground_truth"]._val["mask_data"], np.rot90(label[:, :, 2]))
    assert np.array_equal(masks["prediction"]._val["mask_data"], np.rot90(pred[:, :, 2]))
    assert masks["prediction"]._val["class_labels"] == {0: "bg", 1: "a", 2: "b"}


def test_validation_logs_overlays_with_masks_to_an_offline_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               phantoms: Path) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    root = tmp_path / "run"
    cli = run_domain(DOMAIN, ["fit", "--config", "debug", "--data.datalist", str(phantoms / "dataset.json"),
                              "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false"])
    if wandb.run is not None:
        wandb.run.finish()  # flush the run's files, as the end of a CLI process does
    assert cli.trainer.logger.mode == "offline"
    run_dir = next((root / "wandb").glob(f"offline-run-*-{cli.trainer.logger.version}"))
    media = run_dir / "files" / "media" / "images"
    overlays = sorted((media / "val").glob("overlay_*.png"))
    masks = sorted((media / "mask" / "val").glob("overlay_*.mask.png"))
    # 2 validation epochs x up to 3 slices; a ground-truth and a prediction mask per slice
    assert 2 <= len(overlays) <= 6 and len(masks) == 2 * len(overlays), (overlays, masks)
    values = set().union(*(np.unique(np.asarray(Image.open(m))).tolist() for m in masks))
    assert values <= {0, 1, 2} and values & {1, 2}  # class indices, with foreground
    assert (root / "overlays" / "val_epoch001.png").read_bytes().startswith(b"\x89PNG")  # and the file on disk
