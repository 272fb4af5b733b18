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

from trident_core.artifact import Artifact, load_artifact
from trident_core.errors import ArtifactError, ConfigError, DataError
from trident_core.export import export_artifact
from trident_vision.cli import main
from trident_vision.defaults import make_phantom
from trident_vision.export import SegmentationMetadata, infer
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


def _known_answer_artifact(tmp_path: Path, **module_args: object) -> Path:
    module = SegmentationModule(Threshold(), num_classes=2, class_names=["background", "object"],
                                roi_size=(32, 32, 32), preprocessing=make_preprocessing(spacing=(1.5, 1.5, 1.5)),
                                **module_args)
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


def test_metadata_is_one_dataclass_written_and_read_back(tmp_path: Path) -> None:
    artifact = load_artifact(_known_answer_artifact(tmp_path, sw_batch_size=3, overlap=0.5, blend_mode="constant"))
    raw = json.loads((artifact.path / "metadata.json").read_text())["domain_metadata"]
    # the keys artifacts have always had, task first, then the label value of each class and the post-processing
    assert list(raw) == ["task", "num_classes", "class_names", "in_channels", "preprocessing", "roi_size",
                         "sw_batch_size", "overlap", "blend_mode", "divisor", "network", "label_values",
                         "postprocess"]
    meta = SegmentationMetadata.from_artifact(artifact)
    assert meta == SegmentationMetadata(
        num_classes=2, class_names=["background", "object"], in_channels=1,
        preprocessing=make_preprocessing(spacing=(1.5, 1.5, 1.5)), roi_size=[32, 32, 32], sw_batch_size=3,
        overlap=0.5, blend_mode="constant", divisor=16, network="Threshold", label_values=[0, 1],
        postprocess={"largest_component": False, "fill_holes": False, "tta_flips": False})
    # an artifact exported before label_values and postprocess existed: labels 0..n-1, no post-processing
    for key in ("label_values", "postprocess"):
        raw.pop(key)
    old = SegmentationMetadata.from_dict(raw)
    assert old.values == [0, 1] and old.postprocess == {}


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.pop("sw_batch_size"), r"missing \['sw_batch_size'\]"),
    (lambda m: m.pop("preprocessing"), r"missing \['preprocessing'\]"),
    (lambda m: m.update(fill_holes=True), r"unknown \['fill_holes'\]"),
    (lambda m: m.update(task="intent_classification"), r"\[domain_metadata.task\] is 'intent_classification'"),
])
def test_infer_names_the_metadata_key_it_cannot_use(tmp_path: Path, edit, message: str) -> None:
    artifact = _known_answer_artifact(tmp_path)
    meta_path = artifact / "metadata.json"
    meta = json.loads(meta_path.read_text())
    edit(meta["domain_metadata"])
    meta_path.write_text(json.dumps(meta))
    write_nifti(tmp_path / "in" / "a.nii.gz", np.ones((20, 20, 20), np.float32))
    with pytest.raises(ArtifactError, match=message) as info:
        infer(str(artifact), str(tmp_path / "in"), str(tmp_path / "out"))
    assert str(meta_path) in str(info.value)
    assert not (tmp_path / "out").exists()


def _window_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the batch size of every onnxruntime call (the real ``Artifact.run`` still does the work)."""
    batches: list[int] = []
    real_run = Artifact.run

    def counting_run(self: Artifact, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batches.append(inputs["image"].shape[0])
        return real_run(self, inputs)

    monkeypatch.setattr(Artifact, "run", counting_run)
    return batches


def test_infer_windows_per_call_default_to_the_training_sw_batch_size(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    artifact = _known_answer_artifact(tmp_path, sw_batch_size=3)
    # 64 voxels at 1.5 mm -> 43 after resampling: 2 windows of 32 per axis at overlap 0.25, 8 windows in all
    volume = np.random.default_rng(0).uniform(0, 100, (64, 64, 64)).astype(np.float32)
    write_nifti(tmp_path / "in" / "a.nii.gz", volume)
    batches = _window_batches(monkeypatch)
    main(["infer", "--artifact", str(artifact), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "a")])
    assert batches == [3, 3, 2]
    batches.clear()
    main(["infer", "--artifact", str(artifact), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "b"),
          "--batch_size", "5"])
    assert batches == [5, 3]
    batches.clear()
    infer(str(artifact), str(tmp_path / "in"), str(tmp_path / "c"))
    assert batches == [3, 3, 2]
    same = [np.asarray(nib.load(tmp_path / d / "a_seg.nii.gz").dataobj) for d in "abc"]
    assert np.array_equal(same[0], same[1]) and np.array_equal(same[0], same[2])  # windows per call change no voxel
    with pytest.raises(ConfigError, match="must be >= 1, got 0"):
        infer(str(artifact), str(tmp_path / "in"), str(tmp_path / "d"), batch_size=0)


def test_summary_is_replaced_whole(tmp_path: Path) -> None:
    artifact = _known_answer_artifact(tmp_path)
    write_nifti(tmp_path / "in" / "a.nii.gz", np.ones((20, 20, 20), np.float32))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "summary.json").write_text("stale")
    rows = infer(str(artifact), str(tmp_path / "in"), str(tmp_path / "out"))
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == rows
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_seg.nii.gz", "summary.json"]  # no temp left
