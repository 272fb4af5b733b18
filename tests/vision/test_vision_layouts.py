"""Label layouts users bring, end to end (fit, test, export, infer) on real NIfTI files with oblique affines: one
foreground class (the most common case in medical segmentation), label values with a gap (``0, 1, 4``) and a class
missing from some volumes, and images with several channels (a 4D file, or one file per modality)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from trident_core.cli import run_domain
from trident_vision.cli import DOMAIN, main


def derive(phantoms: Path, root: Path, labels: dict[str, str], relabel: Callable[[np.ndarray, str], np.ndarray],
           modality: dict[str, str] | None = None, channels: str = "") -> Path:
    """A copy of the phantom dataset with labels rewritten by ``relabel(label, file)`` and, with ``channels``
    (``"4d"`` or ``"files"``), a second image channel (a contrast-inverted copy) as a 4D file or a second file."""
    datalist = json.loads((phantoms / "dataset.json").read_text())
    for split in ("training", "validation", "test"):
        for entry in datalist[split]:
            label = nib.load(phantoms / entry["label"])
            (root / entry["label"]).parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(relabel(np.asarray(label.dataobj), entry["label"]).astype(np.uint8),
                                     label.affine, label.header), root / entry["label"])
            image = nib.load(phantoms / entry["image"])
            data = np.asarray(image.dataobj, dtype=np.float32)
            second = (data.max() - data) * (data > 0.5 * data.mean())  # another contrast of the same anatomy
            target = root / entry["image"]
            target.parent.mkdir(parents=True, exist_ok=True)
            if channels == "4d":
                nib.save(nib.Nifti1Image(np.stack([data, second], axis=-1), image.affine), target)
            elif channels == "files":
                t2 = target.with_name(target.name.replace(".nii.gz", "_t2.nii.gz"))
                nib.save(nib.Nifti1Image(data, image.affine), target)
                nib.save(nib.Nifti1Image(second, image.affine), t2)
                entry["image"] = [entry["image"], str(Path(entry["image"]).parent / t2.name)]
            else:
                nib.save(image, target)
    datalist["labels"] = labels
    if modality is not None:
        datalist["modality"] = modality
    (root / "dataset.json").write_text(json.dumps(datalist))
    return root


@pytest.fixture(scope="module")
def one_class(phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom dataset with both structures merged into one foreground class named ``lesion``."""
    return derive(phantoms, tmp_path_factory.mktemp("one_class"), {"0": "background", "1": "lesion"},
                  lambda label, _: label > 0)


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    both = np.logical_and(pred, truth).sum()
    return float(2 * both / (pred.sum() + truth.sum()))


# a short run that learns (the debug config alone gives test Dice ~0.07): 8 epochs of all 4 volumes, 3 mm,
# lr 0.01 for the tiny UNet
LEARN = ["--config", "debug", "--trainer.logger", "false", "--trainer.max_epochs", "8",
         "--trainer.limit_train_batches", "4", "--trainer.limit_test_batches", "1.0",
         "--data.spacing", "[3.0,3.0,3.0]", "--data.num_samples", "2", "--model.optimizer.init_args.lr", "0.01"]


def fit_test_infer(dataset: Path, tmp_path: Path, extra: list[str] = LEARN) -> tuple[dict[str, float], Path]:
    """Fit, test the last checkpoint and infer the test images from the exported artifact: (test metrics, masks)."""
    root = tmp_path / "run"
    common = ["--data.datalist", str(dataset / "dataset.json"), "--trainer.default_root_dir", str(root), *extra]
    run_domain(DOMAIN, ["fit", *common])
    cli = run_domain(DOMAIN, ["test", *common, "--ckpt_path", "last"])
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    main(["infer", "--artifact", str(root / "artifact"), "--input", str(dataset / "dataset.json"),
          "--output", str(tmp_path / "pred")])
    return metrics, tmp_path / "pred"


def _masks(dataset: Path, pred: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(mask written by infer, label file) of every test case; each mask overlays its (first) image file."""
    pairs = []
    for entry in json.loads((dataset / "dataset.json").read_text())["test"]:
        first = entry["image"][0] if isinstance(entry["image"], list) else entry["image"]
        image = nib.load(dataset / first)
        mask = nib.load(pred / Path(first).name.replace(".nii.gz", "_seg.nii.gz"))
        assert mask.shape == image.shape[:3] and np.allclose(mask.affine, image.affine)  # overlays the input
        pairs.append((np.asarray(mask.dataobj), np.asarray(nib.load(dataset / entry["label"]).dataobj)))
    return pairs


def test_one_foreground_class_fits_tests_exports_and_infers(one_class: Path, tmp_path: Path) -> None:
    metrics, pred = fit_test_infer(one_class, tmp_path)  # crashed in the first validation before (0-d tensor)
    assert {"test/dice", "test/dice_lesion", "test/hd95", "test/hd95_lesion"} <= set(metrics)
    assert metrics["test/dice"] == pytest.approx(metrics["test/dice_lesion"])  # the mean of one class is that class
    assert metrics["test/dice"] > 0.4, metrics  # it learned

    meta = json.loads((tmp_path / "run" / "artifact" / "metadata.json").read_text())
    assert meta["domain_metadata"]["class_names"] == ["background", "lesion"]
    scores = []
    for mask, label in _masks(one_class, pred):
        assert set(np.unique(mask).tolist()) <= {0, 1}
        scores.append(_dice(mask == 1, label == 1))
    # the artifact's masks, scored on the input grid, agree with the test step (scored on the resampled grid)
    assert np.mean(scores) == pytest.approx(metrics["test/dice"], abs=0.1), (scores, metrics)
    summary = json.loads((pred / "summary.json").read_text())
    assert [set(row["volumes_ml"]) for row in summary] == [{"lesion"}] * len(summary)


@pytest.mark.slow  # > 20 s on 2 cores: the slow pass (issue 17: default pass < 15 min)
def test_label_values_with_a_gap_and_a_class_missing_from_a_volume(phantoms: Path, tmp_path: Path) -> None:
    def relabel(label: np.ndarray, file: str) -> np.ndarray:
        out = np.where(label == 2, 4, label)
        return np.where(out == 4, 0, out) if file.endswith("tr000.nii.gz") else out  # no tumour in this volume

    dataset = derive(phantoms, tmp_path / "data", {"0": "background", "1": "liver", "4": "tumour"}, relabel)
    metrics, pred = fit_test_infer(dataset, tmp_path)
    assert {"test/dice_liver", "test/dice_tumour", "test/hd95_liver", "test/hd95_tumour"} <= set(metrics)
    meta = json.loads((tmp_path / "run" / "artifact" / "metadata.json").read_text())["domain_metadata"]
    assert meta["class_names"] == ["background", "liver", "tumour"] and meta["label_values"] == [0, 1, 4]
    scores = {1: [], 4: []}
    for mask, label in _masks(dataset, pred):
        assert set(np.unique(mask).tolist()) == {0, 1, 4}  # the dataset's own values, not class indices
        for value in scores:
            scores[value].append(_dice(mask == value, label == value))
    assert np.mean(scores[1]) == pytest.approx(metrics["test/dice_liver"], abs=0.1), (scores, metrics)
    assert np.mean(scores[4]) == pytest.approx(metrics["test/dice_tumour"], abs=0.1), (scores, metrics)
    assert metrics["test/dice_liver"] > 0.4, metrics


@pytest.mark.slow
@pytest.mark.parametrize("channels", ["4d", "files"])
def test_two_channel_images(phantoms: Path, tmp_path: Path, channels: str) -> None:
    dataset = derive(phantoms, tmp_path / "data", {"0": "background", "1": "ellipsoid", "2": "tube"},
                     lambda label, _: label, modality={"0": "T1", "1": "T2"}, channels=channels)
    metrics, pred = fit_test_infer(dataset, tmp_path, ["--config", "debug", "--trainer.logger", "false"])
    assert {"test/dice_ellipsoid", "test/dice_tube"} <= set(metrics)
    meta = json.loads((tmp_path / "run" / "artifact" / "metadata.json").read_text())["domain_metadata"]
    assert meta["in_channels"] == 2
    for mask, _ in _masks(dataset, pred):
        assert set(np.unique(mask).tolist()) <= {0, 1, 2}
    rows = json.loads((pred / "summary.json").read_text())
    assert all(isinstance(row["input"], list if channels == "files" else str) for row in rows)


@pytest.mark.slow
def test_brain_extraction_on_the_mni152_template(tmp_path: Path) -> None:
    """Real anatomy, one foreground class: brain (grey + white matter) vs background on subjects made from the
    MNI152 template in the nilearn wheel (its dataset.json says MR: z-scored over the head)."""
    from trident_vision.defaults import build_mni152

    build_mni152(tmp_path / "mni", {"training": (3, 100), "validation": (1, 200), "test": (1, 300)})
    dataset = derive(tmp_path / "mni", tmp_path / "data", {"0": "background", "1": "brain"},
                     lambda label, _: label > 0)
    metrics, pred = fit_test_infer(dataset, tmp_path, [*LEARN, "--trainer.max_epochs", "6",
                                                       "--trainer.limit_train_batches", "3"])
    meta = json.loads((tmp_path / "run" / "artifact" / "metadata.json").read_text())["domain_metadata"]
    assert meta["preprocessing"]["intensity"] == {"mode": "zscore"} and meta["class_names"] == ["background", "brain"]
    assert metrics["test/dice_brain"] > 0.8, metrics
    [(mask, label)] = _masks(dataset, pred)
    assert _dice(mask == 1, label == 1) == pytest.approx(metrics["test/dice_brain"], abs=0.05)
