"""Artifact-based inference for segmentation: NIfTI in, NIfTI masks with the input's grid out.

``infer`` preprocesses each volume with the transforms stored in the artifact's ``metadata.json``, runs
MONAI's sliding-window inference with onnxruntime as the predictor, inverts the spatial transforms
(foreground crop, spacing, orientation) with ``Invertd`` and writes one mask per input with the input's
shape and affine, plus ``summary.json`` (volume of every class in mL). The export side is
:meth:`trident_vision.module.SegmentationModule.export_spec`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from trident_core.artifact import Artifact, load_artifact
from trident_core.errors import ArtifactError, DataError
from trident_vision.datalist import case_name, check_image, is_nifti, read_datalist

_REQUIRED = ("num_classes", "class_names", "in_channels", "preprocessing", "roi_size", "overlap", "blend_mode")


def input_files(source: str | Path) -> list[Path]:
    """NIfTI files named by ``source``: a file, a folder of ``.nii``/``.nii.gz``, or a ``dataset.json``
    (its ``test`` images, else its ``validation`` images)."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and is_nifti(p))
        if not files:
            raise DataError("no .nii or .nii.gz files in this folder", path=path)
        return files
    if path.suffix == ".json":
        datalist = read_datalist(path)
        entries = datalist.test or datalist.validation
        if not entries:
            raise DataError("the datalist has no 'test' or 'validation' entries to segment", path=path, key="test")
        return [Path(e["image"]) for e in entries]
    if not path.exists():
        raise DataError("input not found", path=path)
    if not is_nifti(path):
        raise DataError("input must be a .nii/.nii.gz file, a folder of them, or a dataset.json", path=path)
    return [path]


def _check_metadata(artifact: Artifact) -> dict[str, Any]:
    meta = artifact.domain_metadata
    missing = [k for k in _REQUIRED if k not in meta]
    if meta.get("task") != "segmentation" or missing:
        raise ArtifactError(f"{artifact.path}: not a vision segmentation artifact (missing {missing}); "
                            "export it with `trident-vision export`")
    return meta


def _segment(artifact: Artifact, meta: dict[str, Any], path: Path, sw_batch_size: int) -> np.ndarray:
    """Class-index mask of one volume on its own voxel grid."""
    import torch
    from monai.data import MetaTensor
    from monai.inferers import sliding_window_inference
    from monai.transforms import Compose, Invertd

    from trident_vision.transforms import preprocess_transforms

    preprocess = Compose(preprocess_transforms(meta["preprocessing"], ["image"]))
    data = preprocess({"image": str(path)})
    image = data["image"]

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        array = windows.detach().cpu().numpy().astype(np.float32)
        return torch.from_numpy(artifact.run({"image": array})["logits"])

    with torch.no_grad():
        logits = sliding_window_inference(image.as_tensor()[None], meta["roi_size"], sw_batch_size, predictor,
                                          overlap=meta["overlap"], mode=meta["blend_mode"])
    data["pred"] = MetaTensor(torch.softmax(logits[0], dim=0), meta=dict(image.meta))
    # resample class probabilities (not labels) back through crop, spacing and orientation
    inverted = Invertd("pred", transform=preprocess, orig_keys="image", nearest_interp=False)(data)["pred"]
    return np.asarray(inverted.argmax(0).cpu().numpy(), dtype=np.uint8)


def _write_mask(mask: np.ndarray, reference: Path, target: Path) -> None:
    """Write ``mask`` with the reference image's affine and header, atomically."""
    import nibabel as nib

    ref = nib.load(str(reference))
    header = ref.header.copy()
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(1, 0)
    if len(ref.shape) == 4:
        header.set_data_shape(ref.shape[:3])
    img = nib.Nifti1Image(mask, ref.affine, header)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.nii.gz")
    try:
        nib.save(img, str(tmp))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def infer(artifact: str, input: str, output: str | None = None, batch_size: int = 4) -> list[dict[str, Any]]:
    """Segment every volume of ``input`` with the artifact; writes ``<case>_seg.nii.gz`` and ``summary.json``.

    Args:
        artifact: Artifact folder written by ``trident-vision export``.
        input: A NIfTI file, a folder of them, or a ``dataset.json``.
        output: Folder for the masks and ``summary.json`` (default ``./predictions``).
        batch_size: Sliding windows per onnxruntime call.

    Returns:
        One row per volume: input, mask path, shape, and volume of each foreground class in mL.
    """
    art = load_artifact(artifact)
    meta = _check_metadata(art)
    files = input_files(input)
    for path in files:  # fail before writing anything
        check_image(path, meta["in_channels"])
    out_dir = Path(output) if output else Path("predictions")
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError("--output must be a folder for the masks", path=out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in files:
        _, affine = check_image(path)
        mask = _segment(art, meta, path, max(1, batch_size))
        target = out_dir / f"{case_name(path)}_seg.nii.gz"
        _write_mask(mask, path, target)
        voxel_ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
        counts = np.bincount(mask.ravel(), minlength=meta["num_classes"])
        rows.append({
            "input": str(path),
            "mask": str(target),
            "shape": list(mask.shape),
            "voxel_ml": voxel_ml,
            "volumes_ml": {name: float(counts[i]) * voxel_ml for i, name in enumerate(meta["class_names"]) if i},
        })
    (out_dir / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows
