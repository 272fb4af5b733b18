"""Bad inputs through the command line: ``error: <file>: ...`` on stderr, exit code 2, nothing half-written; an
empty training label is allowed with a warning naming the file."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from vision_fixtures import write_nifti

from trident_core.export import export_artifact
from trident_vision.cli import main
from trident_vision.defaults import make_phantom
from trident_vision.module import SegmentationModule
from trident_vision.transforms import make_preprocessing

Case = tuple[np.ndarray, np.ndarray, np.ndarray]  # image, label, affine


def write_dataset(root: Path, edit: Callable[[int, Case], Case] = lambda i, case: case,
                  modality: dict[str, str] | None = None) -> Path:
    """Three phantom cases (oblique, anisotropic affines) as a Decathlon datalist; ``edit(i, case)`` spoils one."""
    entries = []
    for i in range(3):
        image, label, affine = edit(i, make_phantom(40 + i))
        write_nifti(root / f"img{i}.nii.gz", image, affine)
        write_nifti(root / f"seg{i}.nii.gz", label, affine if i != 1 else edit(-1, (image, label, affine))[2])
        entries.append({"image": f"img{i}.nii.gz", "label": f"seg{i}.nii.gz"})
    raw = {"labels": {"0": "background", "1": "ellipsoid", "2": "tube"}, "modality": modality or {"0": "MR"},
           "training": entries[:2], "validation": entries[2:]}
    (root / "dataset.json").write_text(json.dumps(raw))
    return root / "dataset.json"


def fit(datalist: Path, root: Path, *extra: str) -> None:
    main(["fit", "--config", "debug", "--data.datalist", str(datalist), "--trainer.default_root_dir", str(root),
          "--trainer.logger", "false", *extra])


def _spoil(index: int, change: Callable[[Case], Case]) -> Callable[[int, Case], Case]:
    return lambda i, case: change(case) if i == index else case


def _shifted(case: Case) -> Case:
    affine = case[2].copy()
    affine[:3, 3] += 4.0
    return case[0], case[1], affine


BAD_FIT = {
    "label value outside labels": (_spoil(1, lambda c: (c[0], np.where(c[1] == 2, 3, c[1]).astype(np.uint8), c[2])),
                                   None, "seg1.nii.gz", r"label values \[3\] are outside the declared classes"),
    "channels unlike modality": (lambda i, c: c, {"0": "T1", "1": "T2"}, "img0.nii.gz",
                                 r"image has 1 channel\(s\), dataset.json's 'modality' \(T1, T2\) expects 2"),
    "image/label shapes differ": (_spoil(2, lambda c: (c[0], np.ascontiguousarray(c[1][:, :, :-1]), c[2])), None,
                                  "seg2.nii.gz", r"label shape .* differs from image shape"),
    # the edit with index -1 gives the affine of seg1 only
    "image/label affines differ": (lambda i, c: _shifted(c) if i == -1 else c, None, "seg1.nii.gz",
                                   r"label affine differs from the image affine"),
}


@pytest.mark.parametrize("case", sorted(BAD_FIT))
def test_fit_refuses_a_bad_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    edit, modality, culprit, message = BAD_FIT[case]
    datalist = write_dataset(tmp_path / "data", edit, modality)
    with pytest.raises(SystemExit) as info:
        fit(datalist, tmp_path / "run")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'data' / culprit}: " in err, err
    assert re.search(message, err), err
    # no checkpoint at all (nothing trained: ProgressOnException saves none), no artifact
    assert not list((tmp_path / "run").glob("checkpoints/*.ckpt"))
    assert not (tmp_path / "run" / "artifact").exists()


def test_an_empty_training_label_trains_with_a_warning_naming_it(tmp_path: Path) -> None:
    datalist = write_dataset(tmp_path / "data", _spoil(0, lambda c: (c[0], np.zeros_like(c[1]), c[2])))
    with pytest.warns(UserWarning, match=rf"{tmp_path / 'data' / 'seg0.nii.gz'}: label volume is empty"):
        fit(datalist, tmp_path / "run", "--trainer.max_epochs", "1")
    assert (tmp_path / "run" / "artifact" / "model.onnx").is_file()


def _artifact(tmp_path: Path, in_channels: int = 1) -> Path:
    net = nn.Conv3d(in_channels, 2, kernel_size=1)
    with torch.no_grad():
        net.weight.fill_(1.0)
    module = SegmentationModule(net, num_classes=2, in_channels=in_channels, overlays=False,
                                preprocessing=make_preprocessing(spacing=(2.0, 2.0, 2.0)), roi_size=(16, 16, 16))
    return export_artifact(module.export_spec(), tmp_path / "artifact", domain="vision").path


@pytest.mark.parametrize(("shape", "in_channels", "message"), [
    ((30, 30), 1, r"image must be 3D .* a 2D image cannot go through a 3D model"),
    ((30, 30, 1), 1, r"empty or flat spatial axis"),
    ((30, 30, 20), 2, r"image has 1 channel\(s\), the model expects 2"),
])
def test_infer_refuses_an_image_the_model_cannot_take(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      shape: tuple[int, ...], in_channels: int, message: str) -> None:
    artifact = _artifact(tmp_path, in_channels)
    image, _, affine = make_phantom(7)
    write_nifti(tmp_path / "in" / "a_good.nii.gz", image, affine)  # sorted first: a bad second file still
    write_nifti(tmp_path / "in" / "b_bad.nii.gz", np.ones(shape, np.float32), affine)  # writes nothing
    with pytest.raises(SystemExit) as info:
        main(["infer", "--artifact", str(artifact), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    bad = tmp_path / "in" / ("a_good.nii.gz" if in_channels == 2 else "b_bad.nii.gz")
    assert f"error: {bad}: " in err and re.search(message, err), err
    assert not (tmp_path / "out").exists()
