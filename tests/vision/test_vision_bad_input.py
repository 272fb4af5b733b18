"""Malformed inputs: every one raises DataError naming the file and the line or key; nothing half-written."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vision_fixtures import write_nifti

from trident_core.errors import DataError, TridentError
from trident_vision.datalist import check_case, find_pairs, read_datalist
from trident_vision.export import input_files

GOOD = np.zeros((8, 8, 8), np.float32)
LABEL = np.zeros((8, 8, 8), np.uint8)


def _datalist(tmp_path: Path, raw: object, name: str = "dataset.json") -> Path:
    write_nifti(tmp_path / "img.nii.gz", GOOD)
    write_nifti(tmp_path / "seg.nii.gz", LABEL)
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else json.dumps(raw))
    return path


ENTRY = {"image": "img.nii.gz", "label": "seg.nii.gz"}
LABELS = {"0": "background", "1": "organ"}

DATALIST_CASES = {
    "empty file": ("", r"invalid JSON", None),
    "not json": ('{"labels": {"0": "bg",,}', r"invalid JSON", None),
    "top-level list": ([ENTRY], r"JSON object", None),
    "no labels": ({"training": [ENTRY]}, r"missing 'labels'", "labels"),
    "labels as list": ({"labels": ["bg", "fg"], "training": [ENTRY]}, r"mapping", "labels"),
    "labels without background": ({"labels": {"1": "bg", "2": "fg"}, "training": [ENTRY]}, r"include 0", "labels"),
    "labels not integers": ({"labels": {"zero": "bg", "one": "fg"}, "training": [ENTRY]}, r"integers", "labels"),
    "only background": ({"labels": {"0": "bg"}, "training": [ENTRY]}, r"at least two classes", "labels"),
    "no training": ({"labels": LABELS}, r"'training'", "training"),
    "training not a list": ({"labels": LABELS, "training": {"a": 1}}, r"must be a list", "training"),
    "entry is a number": ({"labels": LABELS, "training": [3]}, r"object", "training[0]"),
    "entry without image": ({"labels": LABELS, "training": [{"label": "seg.nii.gz"}]}, r"no 'image'",
                            "training[0].image"),
    "entry without label": ({"labels": LABELS, "training": [{"image": "img.nii.gz"}]}, r"no 'label'",
                            "training[0].label"),
    "image path not a string": ({"labels": LABELS, "training": [{"image": 5, "label": "seg.nii.gz"}]},
                                r"file path string", "training[0].image"),
    "missing file": ({"labels": LABELS, "training": [{"image": "nope.nii.gz", "label": "seg.nii.gz"}]},
                     r"file not found", "training[0].image"),
    "path escapes the folder": ({"labels": LABELS, "training": [{"image": "../../etc/passwd.nii.gz",
                                                                 "label": "seg.nii.gz"}]},
                                r"escapes the dataset folder", "training[0].image"),
    "not a nifti file": ({"labels": LABELS, "training": [ENTRY], "validation": [{"image": "dataset.json",
                                                                                "label": "seg.nii.gz"}]},
                         r"not a NIfTI", "validation[0].image"),
}


@pytest.mark.parametrize("case", sorted(DATALIST_CASES))
def test_bad_datalist(tmp_path: Path, case: str) -> None:
    raw, message, key = DATALIST_CASES[case]
    path = _datalist(tmp_path, raw)
    with pytest.raises(DataError, match=message) as info:
        read_datalist(path)
    assert info.value.path == str(path)
    assert info.value.key == key
    assert str(path) in str(info.value)


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = _datalist(tmp_path, '{\n  "labels": {"0": "bg"},\n  "training": [,]\n}')
    with pytest.raises(DataError, match=r"dataset\.json:3: invalid JSON"):
        read_datalist(path)


def test_datalist_in_a_wrong_encoding(tmp_path: Path) -> None:
    path = tmp_path / "dataset.json"
    path.write_bytes(json.dumps({"labels": {"0": "fond", "1": "éé"}}).encode("utf-16"))
    with pytest.raises(DataError, match="UTF-8"):
        read_datalist(path)


def test_missing_datalist(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="datalist not found"):
        read_datalist(tmp_path / "dataset.json")


def _case(tmp_path: Path, image: np.ndarray, label: np.ndarray, label_affine: np.ndarray | None = None) -> dict:
    return {"image": str(write_nifti(tmp_path / "img.nii.gz", image)),
            "label": str(write_nifti(tmp_path / "seg.nii.gz", label, label_affine))}


SHIFTED = np.eye(4)
SHIFTED[:3, 3] = 5.0
NAN_IMAGE = GOOD.copy()
NAN_IMAGE[1, 2, 3] = np.nan
BAD_LABEL = LABEL.copy()
BAD_LABEL[0, 0, 0] = 7
FRACTIONAL = LABEL.astype(np.float32)
FRACTIONAL[0, 0, 0] = 0.5

VOLUME_CASES = {
    "2D image": (np.zeros((8, 8), np.float32), LABEL, None, "img", r"must be 3D"),
    "5D image": (np.zeros((8, 8, 8, 1, 2), np.float32), LABEL, None, "img", r"must be 3D"),
    "flat axis": (np.zeros((8, 8, 1), np.float32), np.zeros((8, 8, 1), np.uint8), None, "img", r"flat"),
    "shape mismatch": (GOOD, np.zeros((8, 8, 6), np.uint8), None, "seg", r"label shape \(8, 8, 6\) differs"),
    "affine mismatch": (GOOD, LABEL, SHIFTED, "seg", r"affine differs"),
    "label outside classes": (GOOD, BAD_LABEL, None, "seg", r"label values \[7\] are outside"),
    "fractional label": (GOOD, FRACTIONAL, None, "seg", r"outside the declared classes"),
    "nan in image": (NAN_IMAGE, LABEL, None, "img", r"NaN or infinite"),
    "huge values": (np.full((8, 8, 8), 1e38, np.float32), LABEL, None, "img", r"exceed 1e30"),
    "4D label": (GOOD, np.zeros((8, 8, 8, 2), np.uint8), None, "seg", r"label must be a 3D volume"),
}


@pytest.mark.parametrize("case", sorted(VOLUME_CASES))
def test_bad_volume(tmp_path: Path, case: str) -> None:
    image, label, label_affine, culprit, message = VOLUME_CASES[case]
    entry = _case(tmp_path, image, label, label_affine)
    with pytest.raises(DataError, match=message) as info:
        check_case(entry, num_classes=3)
    assert info.value.path == str(tmp_path / f"{culprit}.nii.gz")


def test_complex_voxels(tmp_path: Path) -> None:
    entry = _case(tmp_path, np.zeros((8, 8, 8), np.complex64), LABEL)
    with pytest.raises(DataError, match="unsupported voxel type") as info:
        check_case(entry, num_classes=2)
    assert info.value.path == entry["image"]


def test_truncated_nifti(tmp_path: Path) -> None:
    entry = _case(tmp_path, np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32), LABEL)
    data = Path(entry["image"]).read_bytes()
    Path(entry["image"]).write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot read image as NIfTI") as info:
        check_case(entry, num_classes=2)
    assert info.value.path == entry["image"]


def test_empty_nifti_file(tmp_path: Path) -> None:
    entry = _case(tmp_path, GOOD, LABEL)
    Path(entry["label"]).write_bytes(b"")
    with pytest.raises(DataError, match="cannot read label") as info:
        check_case(entry, num_classes=2)
    assert info.value.path == entry["label"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(min_size=0, max_size=600), compress=st.booleans())
def test_random_bytes_as_nifti(tmp_path: Path, payload: bytes, compress: bool) -> None:
    entry = _case(tmp_path, GOOD, LABEL)
    Path(entry["image"]).write_bytes(gzip.compress(payload) if compress else payload)
    with pytest.raises(DataError) as info:
        check_case(entry, num_classes=2)
    assert info.value.path == entry["image"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                      max_size=3), max_leaves=8))
def test_random_json_never_escapes_as_another_error(tmp_path: Path, raw: object) -> None:
    path = _datalist(tmp_path, raw)
    with pytest.raises(DataError) as info:
        read_datalist(path)
    assert info.value.path == str(path)


def test_folder_without_pairs(tmp_path: Path) -> None:
    write_nifti(tmp_path / "lonely_img.nii.gz", GOOD)
    with pytest.raises(DataError, match="no image/label pairs") as info:
        find_pairs(tmp_path)
    assert info.value.path == str(tmp_path)


def test_infer_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no \.nii"):
        input_files(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"must be a \.nii"):
        input_files(tmp_path / "notes.txt")
    with pytest.raises(TridentError, match="not found"):
        input_files(tmp_path / "missing.nii.gz")
