"""``trident serve`` on a segmentation artifact: the mask and volumes equal ``infer``'s; corrupt or wrong volumes
get 400, oversized ones 413, and the server goes on."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from serve_fixtures import Server, run_readme_curl
from torch import nn

from trident_core.export import export_artifact
from trident_vision.defaults import make_phantom
from trident_vision.export import infer
from trident_vision.module import SegmentationModule
from trident_vision.transforms import make_preprocessing

pytestmark = pytest.mark.slow  # its module fixture builds artifacts (25-40 s on 2 cores): the slow pass (issue 17)


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> bytes:
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(path))
    return path.read_bytes()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = nn.Conv3d(1, 2, kernel_size=1)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.zero_()
        net.weight[1].fill_(1.0)  # class 1 where the z-scored intensity is above 0: a mask of both classes
    module = SegmentationModule(net, num_classes=2, in_channels=1, overlays=False,
                                preprocessing=make_preprocessing(spacing=(2.0, 2.0, 2.0)), roi_size=(16, 16, 16))
    return export_artifact(module.export_spec(), tmp_path_factory.mktemp("seg") / "artifact", domain="vision").path


@pytest.fixture(scope="module")
def server(serving: Callable[..., Server], artifact: Path) -> Server:
    return serving(artifact, "--max_batch_size", "2", "--max_voxels", "100000")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_mask_and_volumes_equal_infer(server: Server, artifact: Path, tmp_path: Path) -> None:
    image, _, affine = make_phantom(7)
    data = _nifti(tmp_path / "case.nii.gz", image, affine)
    [row] = infer(str(artifact), str(tmp_path / "case.nii.gz"), str(tmp_path / "out"))
    status, got = server.request("/predict", {"image": _b64(data)})
    assert status == 200, got
    (tmp_path / "served.nii.gz").write_bytes(base64.b64decode(got["mask"]))
    served, want = nib.load(str(tmp_path / "served.nii.gz")), nib.load(row["mask"])
    assert served.shape == image.shape[:3]
    np.testing.assert_array_equal(np.asarray(served.dataobj), np.asarray(want.dataobj))
    np.testing.assert_allclose(served.affine, want.affine)
    assert 0 < np.asarray(served.dataobj).mean() < 1  # a real mask, not all one class
    assert got["volumes_ml"] == pytest.approx(row["volumes_ml"])


@pytest.mark.parametrize(("make", "status", "message"), [
    (lambda tmp, aff: "%%%", 400, "is not valid base64"),
    (lambda tmp, aff: _b64(gzip.compress(b"not a nifti header")), 400, "not a readable NIfTI"),
    (lambda tmp, aff: _b64(_nifti(tmp / "flat.nii.gz", np.ones((20, 20)), aff)), 400, "image must be 3D"),
    (lambda tmp, aff: _b64(_nifti(tmp / "nan.nii.gz", np.full((8, 8, 8), np.nan), aff)), 400, "NaN"),
    (lambda tmp, aff: _b64(_nifti(tmp / "big.nii.gz", np.zeros((50, 50, 50)), aff)), 413,
     "volume of 125000 voxels is over the limit of 100000"),
])
def test_bad_volumes_are_refused_and_the_server_goes_on(server: Server, tmp_path: Path, make: Callable,
                                                        status: int, message: str) -> None:
    got_status, got = server.request("/predict", {"image": make(tmp_path, np.eye(4))})
    assert got_status == status, got
    assert got["field"] == "image" and message in got["error"], got
    assert server.alive()


def test_the_readme_curl_example_runs(server: Server, artifact: Path, tmp_path: Path) -> None:
    image, _, affine = make_phantom(3)
    _nifti(tmp_path / "case.nii.gz", image, affine)
    run_readme_curl("case.nii.gz", server, tmp_path)
    [row] = infer(str(artifact), str(tmp_path / "case.nii.gz"), str(tmp_path / "out"))
    served = nib.load(str(tmp_path / "case_seg.nii.gz"))
    np.testing.assert_array_equal(np.asarray(served.dataobj), np.asarray(nib.load(row["mask"]).dataobj))
