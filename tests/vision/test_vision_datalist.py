"""Reading datasets: Decathlon datalists, folders of pairs, the embedded phantoms."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from vision_fixtures import write_nifti

from trident_core.errors import DataError
from trident_vision.datalist import check_case, find_pairs, read_datalist
from trident_vision.defaults import PHANTOM_LABELS, make_phantom


def test_reads_decathlon_datalist_and_resolves_paths(phantoms: Path) -> None:
    datalist = read_datalist(phantoms / "dataset.json")
    assert datalist.labels == [PHANTOM_LABELS[str(i)] for i in range(3)]
    assert (len(datalist.training), len(datalist.validation), len(datalist.test)) == (4, 1, 2)
    for entry in datalist.training + datalist.test:
        assert Path(entry["image"]).is_absolute() and Path(entry["image"]).is_file()
        check_case(entry, datalist.num_classes)


def test_decathlon_test_entries_may_be_bare_image_paths(phantoms: Path, tmp_path: Path) -> None:
    raw = json.loads((phantoms / "dataset.json").read_text())
    raw["test"] = [e["image"] for e in raw["test"]]
    path = phantoms / "bare_test.json"
    path.write_text(json.dumps(raw))
    datalist = read_datalist(path)
    assert all("label" not in e for e in datalist.test)


def test_folder_of_pairs(tmp_path: Path) -> None:
    for i in range(3):
        image, label, affine = make_phantom(i)
        write_nifti(tmp_path / f"case{i}_img.nii.gz", image, affine)
        write_nifti(tmp_path / f"case{i}_seg.nii.gz", label, affine)
    write_nifti(tmp_path / "orphan_img.nii.gz", np.zeros((4, 4, 4), np.float32))
    pairs = find_pairs(tmp_path)
    assert [Path(p["image"]).name for p in pairs] == [f"case{i}_img.nii.gz" for i in range(3)]
    assert all(p["label"].endswith("_seg.nii.gz") for p in pairs)


def test_phantoms_have_two_classes_anisotropic_voxels_and_varied_affines(phantoms: Path) -> None:
    datalist = read_datalist(phantoms / "dataset.json")
    shapes, affines = set(), []
    for entry in datalist.training:
        img, seg = nib.load(entry["image"]), nib.load(entry["label"])
        zooms = sorted(img.header.get_zooms())
        assert zooms[-1] / zooms[0] > 1.5  # anisotropic
        assert set(np.unique(np.asarray(seg.dataobj)).tolist()) == {0, 1, 2}
        shapes.add(img.shape)
        affines.append(img.affine)
    assert len(shapes) == len(datalist.training)
    assert not np.allclose(affines[0][:3, :3], np.diag(np.diag(affines[0][:3, :3])))  # rotated: non-identity


def test_train_validation_test_come_from_different_seeds(phantoms: Path) -> None:
    datalist = read_datalist(phantoms / "dataset.json")
    arrays = [np.asarray(nib.load(e["image"]).dataobj) for e in datalist.training + datalist.test]
    for i, a in enumerate(arrays):
        for b in arrays[i + 1:]:
            assert a.shape != b.shape or not np.allclose(a, b)


def test_missing_datalist_entry_names_the_key(phantoms: Path) -> None:
    raw = json.loads((phantoms / "dataset.json").read_text())
    raw["training"][1]["label"] = "./labelsTr/nope.nii.gz"
    path = phantoms / "broken.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"broken\.json: \[training\[1\]\.label\] file not found"):
        read_datalist(path)


def test_mni152_brain_subjects_from_the_nilearn_wheel(tmp_path: Path) -> None:
    from trident_vision.defaults import BRAIN_LABELS, build_mni152

    build_mni152(tmp_path, {"training": (2, 100), "validation": (0, 200), "test": (1, 300)})
    datalist = read_datalist(tmp_path / "dataset.json")
    assert datalist.labels == [BRAIN_LABELS[str(i)] for i in range(3)]
    first, second = (nib.load(e["label"]) for e in datalist.training)
    counts = np.bincount(np.asarray(first.dataobj).ravel(), minlength=3)
    assert counts[1] > 10_000 and counts[2] > 10_000  # grey and white matter
    assert not np.allclose(first.affine, second.affine)  # augmented subjects differ
    check_case(datalist.test[0], num_classes=3)


def test_datamodule_on_a_folder_of_pairs_holds_out_validation(tmp_path: Path) -> None:
    from trident_vision.data import SegmentationDataModule

    for i in range(5):
        image, label, affine = make_phantom(40 + i)
        write_nifti(tmp_path / f"c{i}_img.nii.gz", image, affine)
        write_nifti(tmp_path / f"c{i}_seg.nii.gz", label, affine)
    data = SegmentationDataModule(image_dir=str(tmp_path), roi_size=(16, 16, 16), spacing=(4.0, 4.0, 4.0),
                                  cache="none", val_fraction=0.2)
    assert (data.num_classes, data.in_channels) == (3, 1)
    splits = data.splits()
    assert (len(splits["train"]), len(splits["val"])) == (4, 1)
    assert splits == data.splits()  # seeded: the same every time
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert tuple(batch["image"].shape[1:]) == (1, 16, 16, 16)
    assert batch["image"].shape[0] == data.batch_size * data.num_samples


def test_disk_cache_persists_preprocessed_volumes(phantoms: Path, tmp_path: Path) -> None:
    from trident_vision.data import SegmentationDataModule

    data = SegmentationDataModule(datalist=str(phantoms / "dataset.json"), roi_size=(16, 16, 16),
                                  spacing=(4.0, 4.0, 4.0), cache="disk", cache_dir=str(tmp_path / "cache"))
    data.setup("validate")
    item = data.datasets["val"][0]
    assert item["image"].shape == item["label"].shape
    assert any((tmp_path / "cache").iterdir())


def test_label_values_with_a_gap_modality_and_one_file_per_modality(tmp_path: Path) -> None:
    image, label, affine = make_phantom(5)
    write_nifti(tmp_path / "t1.nii.gz", image, affine)
    write_nifti(tmp_path / "t2.nii.gz", 2 * image, affine)
    write_nifti(tmp_path / "seg.nii.gz", np.where(label == 2, 4, label).astype(np.uint8), affine)
    entry = {"image": ["t1.nii.gz", "t2.nii.gz"], "label": "seg.nii.gz"}
    (tmp_path / "dataset.json").write_text(json.dumps({
        "labels": {"4": "tumour", "0": "background", "1": "liver"}, "modality": {"0": "T1", "1": "T2"},
        "training": [entry], "test": [["t1.nii.gz", "t2.nii.gz"]]}))
    datalist = read_datalist(tmp_path / "dataset.json")
    assert datalist.labels == ["background", "liver", "tumour"] and datalist.values == [0, 1, 4]
    assert datalist.modality == ["T1", "T2"]
    assert datalist.training[0]["image"] == [str(tmp_path / "t1.nii.gz"), str(tmp_path / "t2.nii.gz")]
    assert datalist.test[0]["image"] == datalist.training[0]["image"]
    assert check_case(datalist.training[0], 3, in_channels=2, label_values=datalist.values) == {0, 1, 4}
    with pytest.raises(DataError, match=r"label values \[4\] are outside the declared classes \[0, 1, 2\]"):
        check_case(datalist.training[0], 3, in_channels=2)  # values 0..2 would be a different dataset


def test_a_modality_file_on_another_grid_is_named(tmp_path: Path) -> None:
    image, label, affine = make_phantom(5)
    write_nifti(tmp_path / "t1.nii.gz", image, affine)
    write_nifti(tmp_path / "t2.nii.gz", image[:-1], affine)
    write_nifti(tmp_path / "seg.nii.gz", label, affine)
    entry = {"image": [str(tmp_path / "t1.nii.gz"), str(tmp_path / "t2.nii.gz")], "label": str(tmp_path / "seg.nii.gz")}
    with pytest.raises(DataError, match="modality files differ in shape or affine") as info:
        check_case(entry, 3)
    assert info.value.path == str(tmp_path / "t2.nii.gz")
