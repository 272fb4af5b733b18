"""Label layouts users bring: one foreground class (the most common case in medical segmentation) end to end."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from trident_core.cli import run_domain
from trident_vision.cli import DOMAIN, main


@pytest.fixture(scope="module")
def one_class(phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom dataset with both structures merged into one foreground class named ``lesion``."""
    root = tmp_path_factory.mktemp("one_class")
    datalist = json.loads((phantoms / "dataset.json").read_text())
    for split in ("training", "validation", "test"):
        for entry in datalist[split]:
            for key in ("image", "label"):
                source = phantoms / entry[key]
                target = root / entry[key]
                target.parent.mkdir(parents=True, exist_ok=True)
                img = nib.load(source)
                if key == "label":
                    binary = (np.asarray(img.dataobj) > 0).astype(np.uint8)
                    img = nib.Nifti1Image(binary, img.affine, img.header)
                nib.save(img, target)
    datalist["labels"] = {"0": "background", "1": "lesion"}
    (root / "dataset.json").write_text(json.dumps(datalist))
    return root


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    both = np.logical_and(pred, truth).sum()
    return float(2 * both / (pred.sum() + truth.sum()))


def test_one_foreground_class_fits_tests_exports_and_infers(one_class: Path, tmp_path: Path) -> None:
    root = tmp_path / "run"
    # a short run that learns (the debug config alone gives test Dice ~0.07): 8 epochs of all 4 volumes, 3 mm,
    # lr 0.01 for the tiny UNet
    common = ["--config", "debug", "--data.datalist", str(one_class / "dataset.json"),
              "--trainer.default_root_dir", str(root), "--trainer.logger", "false", "--trainer.max_epochs", "8",
              "--trainer.limit_train_batches", "4", "--trainer.limit_test_batches", "1.0",
              "--data.spacing", "[3.0,3.0,3.0]", "--data.num_samples", "2",
              "--model.optimizer.init_args.lr", "0.01"]
    run_domain(DOMAIN, ["fit", *common])  # crashed in the first validation before (0-d per-class tensor)
    cli = run_domain(DOMAIN, ["test", *common, "--ckpt_path", "last"])
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    assert {"test/dice", "test/dice_lesion", "test/hd95", "test/hd95_lesion"} <= set(metrics)
    assert metrics["test/dice"] == pytest.approx(metrics["test/dice_lesion"])  # the mean of one class is that class
    assert metrics["test/dice"] > 0.4, metrics  # it learned

    meta = json.loads((root / "artifact" / "metadata.json").read_text())
    assert meta["domain_metadata"]["class_names"] == ["background", "lesion"]
    main(["infer", "--artifact", str(root / "artifact"), "--input", str(one_class / "dataset.json"),
          "--output", str(tmp_path / "pred")])
    datalist = json.loads((one_class / "dataset.json").read_text())
    scores = []
    for entry in datalist["test"]:
        image, label = nib.load(one_class / entry["image"]), nib.load(one_class / entry["label"])
        mask = nib.load(tmp_path / "pred" / Path(entry["image"]).name.replace(".nii.gz", "_seg.nii.gz"))
        assert mask.shape == image.shape and np.allclose(mask.affine, image.affine)  # overlays the input
        values = np.asarray(mask.dataobj)
        assert set(np.unique(values).tolist()) <= {0, 1}
        scores.append(_dice(values == 1, np.asarray(label.dataobj) == 1))
    # the artifact's masks, scored on the input grid, agree with the test step (scored on the resampled grid)
    assert np.mean(scores) == pytest.approx(metrics["test/dice"], abs=0.1), (scores, metrics)
    summary = json.loads((tmp_path / "pred" / "summary.json").read_text())
    assert [set(row["volumes_ml"]) for row in summary] == [{"lesion"}] * len(datalist["test"])
