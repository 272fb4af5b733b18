"""Both halves of the segmentation artifact: what training exports and how serving reads and runs it.

Export: :func:`export_spec` (``SegmentationModule.export_spec`` delegates here) writes the network alone plus
:class:`SegmentationMetadata`, everything ``infer`` needs to preprocess, window and label a volume. Serving:
:class:`Segmenter` reads that same dataclass back, preprocesses each volume with the stored transforms, runs MONAI's
sliding-window inference with onnxruntime as the predictor, inverts the spatial transforms (foreground crop,
spacing, orientation) with ``Invertd`` and turns the class probabilities into a mask with
:func:`segmentation_mask`, the one post-processing rule the module's validation and test steps use as well.
``infer`` writes one mask per input with the input's shape and affine, plus ``summary.json`` (volume of every class
in mL). Serving needs onnxruntime, MONAI and numpy (torch through MONAI), never Lightning.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict, cast

import numpy as np

from trident_core.artifact import Artifact, load_artifact
from trident_core.errors import ConfigError, DataError
from trident_core.metadata import DomainMetadata
from trident_core.output import write_text_atomic
from trident_vision.datalist import case_name, check_image, is_nifti, read_datalist

if TYPE_CHECKING:
    import torch

    from trident_core.export import ExportSpec
    from trident_vision.module import SegmentationModule


class PostProcessing(TypedDict, total=False):
    """Mask post-processing, off by default (``--model.postprocess.largest_component true`` and so on).

    Attributes:
        largest_component: Keep only the largest connected component of every foreground class (MONAI
            ``KeepLargestConnectedComponent``): removes stray islands.
        fill_holes: Fill background enclosed by a class (MONAI ``FillHoles``).
        tta_flips: Average class probabilities over the volume and its flips along each spatial axis (4 passes).
    """

    largest_component: bool
    fill_holes: bool
    tta_flips: bool


def postprocess_options(options: Mapping[str, Any] | None) -> dict[str, bool]:
    """Every :class:`PostProcessing` option, ``False`` unless set; unknown keys raise ``ConfigError``."""
    names = list(PostProcessing.__annotations__)
    unknown = sorted(set(options or {}) - set(names))
    if unknown:
        raise ConfigError(f"model.postprocess: unknown option(s) {unknown}; known: {names}")
    return {name: bool((options or {}).get(name, False)) for name in names}


@dataclass(frozen=True)
class SegmentationMetadata(DomainMetadata):
    """The artifact's ``domain_metadata``, written by :func:`export_spec` and read by :class:`Segmenter`.

    Attributes:
        num_classes: Classes including background (the network's output channels).
        class_names: One name per class; index 0 is background.
        in_channels: Image channels the network takes.
        preprocessing: The dict :func:`trident_vision.transforms.preprocess_transforms` builds the transforms from.
        roi_size: Sliding-window size (multiples of ``divisor``).
        sw_batch_size: Windows per forward pass in training's evaluation; ``infer``'s default windows per call.
        overlap: Fraction of overlap between windows.
        blend_mode: ``gaussian`` or ``constant`` weighting of overlapping windows.
        divisor: Total stride of the network: every spatial size it takes is a multiple of it.
        network: Class name of the network (for people reading the file).
        label_values: The label value written for each class (``[0, 1, 4]``); ``None`` (artifacts exported
            before it existed) means ``0..num_classes-1``.
        postprocess: The :class:`PostProcessing` options evaluation used; ``infer`` applies the same.
    """

    TASK: ClassVar[str] = "segmentation"
    num_classes: int
    class_names: list[str]
    in_channels: int
    preprocessing: dict[str, Any]
    roi_size: list[int]
    sw_batch_size: int
    overlap: float
    blend_mode: str
    divisor: int
    network: str
    label_values: list[int] | None = None
    postprocess: dict[str, bool] = field(default_factory=dict)

    @property
    def values(self) -> list[int]:
        """The label value of every class index."""
        return list(self.label_values) if self.label_values else list(range(self.num_classes))


def segmentation_mask(scores: torch.Tensor, postprocess: Mapping[str, bool] | None = None) -> torch.Tensor:
    """The class-index mask of class scores: the one post-processing rule of evaluation and of ``infer``.

    Args:
        scores: Logits or class probabilities (softmax keeps their order), ``[C, D, H, W]`` or ``[B, C, D, H, W]``:
            the class axis is the fourth from the end; any device, any grid.
        postprocess: :class:`PostProcessing` options; ``largest_component`` and ``fill_holes`` apply here (in
            that order, per class and per volume), ``tta_flips`` where the scores are made
            (:func:`flip_averaged`).

    Returns:
        ``uint8`` class indices, the class axis removed (``[D, H, W]`` or ``[B, D, H, W]``), on the same device;
        a tie goes to the lower class index.
    """
    import torch

    mask = scores.argmax(dim=-4).to(torch.uint8)
    options = postprocess or {}
    if not (options.get("largest_component") or options.get("fill_holes")):
        return mask
    from monai.transforms import FillHoles, KeepLargestConnectedComponent

    classes = list(range(1, scores.shape[-4]))
    ops: list[Any] = []  # MONAI transforms
    if options.get("largest_component"):
        ops.append(KeepLargestConnectedComponent(applied_labels=classes, is_onehot=False, independent=True))
    if options.get("fill_holes"):
        ops.append(FillHoles(applied_labels=classes))
    volumes = mask.reshape(-1, 1, *mask.shape[-3:])  # the transforms take one channel-first volume
    out = []
    for volume in volumes:
        for op in ops:
            volume = op(volume)
        out.append(torch.as_tensor(volume).to(device=mask.device, dtype=torch.uint8))
    return torch.cat(out).reshape(mask.shape)


def flip_averaged(logits_of: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                  logits: torch.Tensor | None = None) -> torch.Tensor:
    """Test-time flips: class probabilities averaged over ``images`` and its flips along each spatial axis.

    Args:
        logits_of: Whole-volume logits of ``[B, C_in, D, H, W]`` images (a sliding-window inference).
        images: The images.
        logits: ``logits_of(images)`` when the caller has it already (saves one pass).

    Returns:
        ``[B, C, D, H, W]`` probabilities.
    """
    import torch

    total = torch.softmax(logits_of(images) if logits is None else logits, dim=1)
    for axis in (2, 3, 4):
        total = total + torch.softmax(logits_of(images.flip(axis)), dim=1).flip(axis)
    return total / 4


def export_spec(module: SegmentationModule) -> ExportSpec:
    """The network alone (logits on ``[B, C, D, H, W]`` with spatial sizes multiple of the stride), plus the
    :class:`SegmentationMetadata` ``infer`` reads back."""
    import copy

    import torch

    from trident_core.export import ExportSpec

    net = copy.deepcopy(module.net).cpu().float().eval()
    d, roi = module.divisor, module.roi_size
    # batch 2 in both: torch.export specialises a dimension traced at size 1
    gen = torch.Generator().manual_seed(0)
    examples = [(torch.randn(2, module.in_channels, *roi, generator=gen),),
                (torch.randn(2, module.in_channels, roi[0] + d, roi[1], max(2 * d, roi[2] - d), generator=gen),)]
    spatial = {0: "batch", 2: "depth", 3: "height", 4: "width"}
    metadata = SegmentationMetadata(
        num_classes=module.num_classes, class_names=module.class_names, in_channels=module.in_channels,
        preprocessing=module.preprocessing, roi_size=module.roi_size, sw_batch_size=module.sw_batch_size,
        overlap=module.overlap, blend_mode=module.blend_mode, divisor=d, network=type(module.net).__name__,
        label_values=module.label_values, postprocess=module.postprocess,
    )
    return ExportSpec(model=net, example_inputs=examples, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": spatial, "logits": spatial}, metadata=metadata.to_dict(), atol=1e-4)


def input_files(source: str | Path) -> list[Path | list[Path]]:
    """NIfTI files named by ``source``: a file, a folder of ``.nii``/``.nii.gz``, or a ``dataset.json``
    (its ``test`` images, else its ``validation`` images; an image given as one file per modality stays a list)."""
    path = Path(source)
    if path.is_dir():
        files: list[Path | list[Path]] = sorted(p for p in path.iterdir() if p.is_file() and is_nifti(p))
        if not files:
            raise DataError("no .nii or .nii.gz files in this folder", path=path)
        return files
    if path.suffix == ".json":
        datalist = read_datalist(path)
        entries = datalist.test or datalist.validation
        if not entries:
            raise DataError("the datalist has no 'test' or 'validation' entries to segment", path=path, key="test")
        return [[Path(p) for p in e["image"]] if isinstance(e["image"], list) else Path(e["image"])
                for e in entries]
    if not path.exists():
        raise DataError("input not found", path=path)
    if not is_nifti(path):
        raise DataError("input must be a .nii/.nii.gz file, a folder of them, or a dataset.json", path=path)
    return [path]


class Segmenter:
    """The artifact runner: one NIfTI volume in, its class-index mask on its own voxel grid out.

    Args:
        artifact: An opened segmentation artifact.
        sw_batch_size: Sliding windows per onnxruntime call; ``None`` takes the metadata's ``sw_batch_size``
            (the value training evaluated with).

    Raises:
        ArtifactError: the metadata is not a segmentation artifact's (missing or unknown keys named).
        ConfigError: ``sw_batch_size`` below 1.
    """

    def __init__(self, artifact: Artifact, sw_batch_size: int | None = None) -> None:
        from monai.transforms import Compose

        from trident_vision.transforms import preprocess_transforms

        self.artifact = artifact
        self.metadata = SegmentationMetadata.from_artifact(artifact)
        self.sw_batch_size = self.metadata.sw_batch_size if sw_batch_size is None else sw_batch_size
        if self.sw_batch_size < 1:
            raise ConfigError(f"batch_size (sliding windows per call) must be >= 1, got {self.sw_batch_size}")
        self.preprocess = Compose(preprocess_transforms(self.metadata.preprocessing, ["image"]))

    def _predict(self, windows: torch.Tensor) -> torch.Tensor:
        import torch

        array = windows.detach().cpu().numpy().astype(np.float32)
        return torch.from_numpy(self.artifact.run({"image": array})["logits"])

    def __call__(self, path: Path | list[Path]) -> np.ndarray:
        """Class-index mask (``uint8``) of the volume at ``path`` (or one file per modality), with its shape."""
        import torch
        from monai.data import MetaTensor
        from monai.inferers import sliding_window_inference
        from monai.transforms import Invertd

        meta = self.metadata
        data = self.preprocess({"image": [str(p) for p in path] if isinstance(path, list) else str(path)})
        image = data["image"]

        def logits_of(images: torch.Tensor) -> torch.Tensor:
            logits = sliding_window_inference(images, meta.roi_size, self.sw_batch_size, self._predict,
                                              overlap=meta.overlap, mode=meta.blend_mode)
            return cast(torch.Tensor, logits)  # a tensor in, a tensor out

        with torch.no_grad():
            batch = image.as_tensor()[None]
            probs = (flip_averaged(logits_of, batch) if meta.postprocess.get("tta_flips")
                     else torch.softmax(logits_of(batch), dim=1))
        data["pred"] = MetaTensor(probs[0], meta=dict(image.meta))
        # resample class probabilities (not labels) back through crop, spacing and orientation
        inverted = Invertd("pred", transform=self.preprocess, orig_keys="image", nearest_interp=False)(data)["pred"]
        return segmentation_mask(inverted.as_tensor(), meta.postprocess).cpu().numpy()

    def label_image(self, mask: np.ndarray) -> np.ndarray:
        """Class indices -> the label values the dataset uses (``[0, 1, 4]``), as uint8 (uint16 above 255)."""
        values = self.metadata.values
        return np.asarray(values, dtype=np.uint8 if max(values) < 256 else np.uint16)[mask]

    def volumes_ml(self, mask: np.ndarray, affine: np.ndarray) -> dict[str, float]:
        """Volume in mL of every foreground class of ``mask`` on a grid with ``affine``."""
        voxel_ml = voxel_volume_ml(affine)
        counts = np.bincount(mask.ravel(), minlength=self.metadata.num_classes)
        return {name: float(counts[i]) * voxel_ml for i, name in enumerate(self.metadata.class_names) if i}


def voxel_volume_ml(affine: np.ndarray) -> float:
    """Volume of one voxel in mL (|det| of the affine's 3x3 part, in mm^3, / 1000)."""
    return float(abs(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0


def write_mask(mask: np.ndarray, reference: Path, target: Path) -> None:
    """Write ``mask`` with the reference image's affine and header (its own dtype), atomically."""
    import nibabel as nib

    ref = nib.load(str(reference))
    header = ref.header.copy()
    header.set_data_dtype(mask.dtype)
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


def infer(artifact: str, input: str, output: str | None = None, batch_size: int | None = None) -> list[dict[str, Any]]:
    """Segment every volume of ``input`` with the artifact; writes ``<case>_seg.nii.gz`` and ``summary.json``.

    Args:
        artifact: Artifact folder written by ``trident-vision export``.
        input: A NIfTI file, a folder of them, or a ``dataset.json``.
        output: Folder for the masks and ``summary.json`` (default ``./predictions``).
        batch_size: Sliding windows per onnxruntime call (default: the ``sw_batch_size`` training used, stored in
            the artifact).

    Returns:
        One row per volume: input, mask path, shape, and volume of each foreground class in mL.
    """
    segment = Segmenter(load_artifact(artifact), sw_batch_size=batch_size)
    meta = segment.metadata
    files = input_files(input)
    for path in files:  # fail before writing anything
        check_image(path, meta.in_channels)
    out_dir = Path(output) if output else Path("predictions")
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError("--output must be a folder for the masks", path=out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in files:
        _, affine = check_image(path)
        mask = segment(path)
        reference = path[0] if isinstance(path, list) else path
        target = out_dir / f"{case_name(reference)}_seg.nii.gz"
        write_mask(segment.label_image(mask), reference, target)
        rows.append({
            "input": [str(p) for p in path] if isinstance(path, list) else str(path),
            "mask": str(target),
            "shape": list(mask.shape),
            "voxel_ml": voxel_volume_ml(affine),
            "volumes_ml": segment.volumes_ml(mask, affine),
        })
    write_text_atomic(out_dir / "summary.json", json.dumps(rows, indent=2) + "\n")
    return rows
