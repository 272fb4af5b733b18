"""``trident serve`` for segmentation artifacts: ``{"image": base64 .nii.gz}`` in, ``{"mask", "volumes_ml"}`` out.

A thin adapter around :class:`~trident_vision.export.Segmenter`: the request's volume is written to a temporary
file, checked and segmented as ``infer`` does, and the mask comes back as base64 ``.nii.gz`` on the input's grid
(the dataset's label values, the input's affine). Preprocessing is MONAI's, so this path imports torch.
"""

from __future__ import annotations

import base64
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trident_core.artifact import Artifact
from trident_core.errors import DataError
from trident_core.serve import Limits, RequestError, decode_b64
from trident_vision.datalist import check_image
from trident_vision.export import Segmenter, write_mask


@dataclass
class _Volume:
    folder: Path
    path: Path
    affine: np.ndarray


class Serving:
    """Decodes requests for, runs, and encodes the answers of a :class:`Segmenter`.

    Args:
        artifact: The opened segmentation artifact.
        limits: ``max_voxels`` is applied here (413).
    """

    def __init__(self, artifact: Artifact, limits: Limits) -> None:
        self.segment = Segmenter(artifact)
        self.limits = limits

    def decode(self, request: dict[str, Any]) -> _Volume:
        import nibabel as nib

        data = decode_b64(request, "image")
        folder = Path(tempfile.mkdtemp(prefix="trident-serve-"))
        path = folder / "image.nii.gz" if data[:2] == b"\x1f\x8b" else folder / "image.nii"
        path.write_bytes(data)
        try:
            try:
                shape = nib.load(str(path)).shape
            except Exception:  # nibabel raises several untyped errors for unreadable bytes
                raise RequestError(400, "image", "not a readable NIfTI (.nii.gz) volume") from None
            if math.prod(shape) > self.limits.max_voxels:
                raise RequestError(413, "image", f"volume of {math.prod(shape)} voxels is over the limit of "
                                                 f"{self.limits.max_voxels}")
            try:
                _, affine = check_image(path, self.segment.metadata.in_channels)
            except DataError as err:
                raise RequestError(400, "image", str(err).replace(str(path), "image")) from None
        except RequestError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return _Volume(folder, path, affine)

    def predict(self, volumes: list[_Volume]) -> list[tuple[_Volume, np.ndarray]]:
        return [(volume, self.segment(volume.path)) for volume in volumes]

    def encode(self, output: tuple[_Volume, np.ndarray]) -> dict[str, Any]:
        volume, mask = output
        try:
            target = volume.folder / "mask.nii.gz"
            write_mask(self.segment.label_image(mask), volume.path, target)
            return {"mask": base64.b64encode(target.read_bytes()).decode("ascii"),
                    "volumes_ml": self.segment.volumes_ml(mask, volume.affine)}
        finally:
            shutil.rmtree(volume.folder, ignore_errors=True)
