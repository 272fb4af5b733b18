"""Embedded default datasets, written as real NIfTI files with a Decathlon ``dataset.json``.

Two builders:

* :func:`build_phantoms`: synthetic 3D phantoms (a bright ellipsoid and a low-contrast tube inside a body),
  anisotropic voxels, non-identity affines (axis flips/permutations, a small rotation, an offset origin),
  multiplicative bias field and noise, varied volume sizes. Train, validation and test volumes come from
  different seeds.
* :func:`build_mni152`: brain tissue segmentation (background / grey / white matter) from the MNI152
  template and tissue maps that the ``nilearn`` wheel ships, with random affine, bias and noise augmentation
  to make several subjects.

Both are deterministic: the same version writes the same voxels on every machine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

PHANTOM_LABELS = {"0": "background", "1": "ellipsoid", "2": "tube"}
BRAIN_LABELS = {"0": "background", "1": "grey_matter", "2": "white_matter"}
PHANTOM_SPLITS = {"training": (16, 1000), "validation": (4, 2000), "test": (4, 3000)}
BRAIN_SPLITS = {"training": (6, 100), "validation": (2, 200), "test": (2, 300)}


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A random rotation matrix of at most ``max_deg`` degrees about each axis."""
    ax, ay, az = np.deg2rad(rng.uniform(-max_deg, max_deg, size=3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _random_affine(rng: np.random.Generator, shape: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Voxel-to-world affine: an axis permutation with flips (LPS, RAS, ...), a small rotation, an offset."""
    perm = np.eye(3)[rng.permutation(3)] if rng.random() < 0.3 else np.eye(3)
    flips = np.diag(rng.choice([-1.0, 1.0], size=3))
    direction = _rotation(rng, 8.0) @ perm @ flips
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(spacing)
    # put the volume centre near a random world point so that origins differ between volumes
    centre = rng.uniform(-30, 30, size=3)
    affine[:3, 3] = centre - affine[:3, :3] @ ((shape - 1) / 2.0)
    return affine


def _world_grid(shape: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World coordinates (3, X, Y, Z) of every voxel centre."""
    idx = np.indices(tuple(int(s) for s in shape), dtype=np.float32).reshape(3, -1)
    world = affine[:3, :3].astype(np.float32) @ idx + affine[:3, 3:4].astype(np.float32)
    return world.reshape(3, *(int(s) for s in shape))


def make_phantom(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic case: ``(image float32, label uint8, affine)``; shapes and affines vary with ``seed``."""
    rng = np.random.default_rng(seed)
    spacing = np.array([rng.uniform(0.9, 1.3), rng.uniform(0.9, 1.3), rng.uniform(2.0, 3.0)])
    extent = rng.uniform(58, 72, size=3)  # field of view in mm
    shape = np.maximum(np.round(extent / spacing), 8).astype(int)
    affine = _random_affine(rng, shape, spacing)
    world = _world_grid(shape, affine)
    centre = affine[:3, :3] @ ((shape - 1) / 2.0) + affine[:3, 3]
    rel = world - centre.reshape(3, 1, 1, 1).astype(np.float32)

    body_axes = rng.uniform(24, 30, size=3)
    body = ((rel / body_axes.reshape(3, 1, 1, 1)) ** 2).sum(0) <= 1.0
    label = np.zeros(body.shape, dtype=np.uint8)

    # class 1: bright ellipsoid on one side of the body
    side = rng.choice([-1.0, 1.0])
    c1 = np.array([side * rng.uniform(8, 12), rng.uniform(-5, 5), rng.uniform(-5, 5)])
    r1 = rng.uniform(8, 12, size=3)
    ell = (((rel - c1.reshape(3, 1, 1, 1)) / r1.reshape(3, 1, 1, 1)) ** 2).sum(0) <= 1.0
    label[ell & body] = 1

    # class 2: a low-contrast tube (finite cylinder) of random direction on the other side
    c2 = np.array([-side * rng.uniform(9, 12), rng.uniform(-5, 5), rng.uniform(-5, 5)])
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    d = rel - c2.reshape(3, 1, 1, 1)
    along = np.tensordot(axis, d, axes=1)
    radial = np.sqrt(np.maximum((d**2).sum(0) - along**2, 0))
    tube = (radial <= rng.uniform(4.5, 6.5)) & (np.abs(along) <= rng.uniform(12, 18))
    label[tube & body & (label == 0)] = 2

    base = rng.uniform(80, 120)
    image = np.where(body, base, 0.0)
    image = image + (label == 1) * base * rng.uniform(1.2, 1.6) + (label == 2) * base * rng.uniform(0.45, 0.7)
    # smooth multiplicative bias field (linear + quadratic terms over the field of view)
    coeffs = rng.uniform(-0.25, 0.25, size=6)
    u = rel / 35.0
    bias = 1 + coeffs[0] * u[0] + coeffs[1] * u[1] + coeffs[2] * u[2] + coeffs[3] * u[0] * u[1]
    bias = bias + coeffs[4] * u[2] ** 2 + coeffs[5] * u[0] ** 2
    image = image * np.clip(bias, 0.5, 1.5)
    image = image + rng.normal(0, rng.uniform(0.08, 0.15) * base, size=image.shape)
    return image.astype(np.float32), label, affine


def _save_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


def _write_datalist(root: Path, name: str, labels: dict[str, str], entries: dict[str, list[dict[str, str]]]) -> None:
    datalist = {
        "name": name,
        "tensorImageSize": "3D",
        "modality": {"0": "MR"},
        "labels": labels,
        "numTraining": len(entries["training"]),
        "numTest": len(entries["test"]),
        **entries,
    }
    (root / "dataset.json").write_text(json.dumps(datalist, indent=2))


def _write_decathlon(root: Path, prefix: str, splits: dict[str, tuple[int, int]],
                     make_case: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray]], name: str,
                     labels: dict[str, str]) -> None:
    """Write ``make_case(seed)`` volumes in the Decathlon layout (``imagesTr``/``labelsTr``/``imagesTs``/...)."""
    entries: dict[str, list[dict[str, str]]] = {}
    for split, (count, seed_base) in splits.items():
        sub = "Ts" if split == "test" else "Tr"
        (root / f"images{sub}").mkdir(parents=True, exist_ok=True)
        (root / f"labels{sub}").mkdir(parents=True, exist_ok=True)
        entries[split] = []
        for i in range(count):
            image, seg, affine = make_case(seed_base + i)
            file = f"{prefix}_{split[:2]}{i:03d}.nii.gz"
            _save_nifti(root / f"images{sub}" / file, image, affine)
            _save_nifti(root / f"labels{sub}" / file, seg, affine)
            entries[split].append({"image": f"./images{sub}/{file}", "label": f"./labels{sub}/{file}"})
    _write_datalist(root, name, labels, entries)


def build_phantoms(root: Path, splits: dict[str, tuple[int, int]] | None = None) -> None:
    """Write the synthetic phantom dataset (``imagesTr``/``labelsTr``/``imagesTs``/``labelsTs``) into ``root``.

    Args:
        root: Output folder (created).
        splits: ``{split: (count, seed_base)}``; defaults to 16/4/4 cases with disjoint seeds.
    """
    _write_decathlon(root, "phantom", splits or PHANTOM_SPLITS, make_phantom, "TridentPhantoms", PHANTOM_LABELS)


def _mni152_volumes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Template (float32), tissue labels (uint8: 0 bg, 1 grey, 2 white) and affine from nilearn's wheel."""
    from nilearn.datasets import load_mni152_gm_template, load_mni152_template, load_mni152_wm_template

    template = load_mni152_template(resolution=2)
    gm = np.asarray(load_mni152_gm_template(resolution=2).get_fdata(), dtype=np.float32)
    wm = np.asarray(load_mni152_wm_template(resolution=2).get_fdata(), dtype=np.float32)
    label = np.zeros(gm.shape, dtype=np.uint8)
    label[(gm >= 0.5) & (gm >= wm)] = 1
    label[(wm >= 0.5) & (wm > gm)] = 2
    return np.asarray(template.get_fdata(), dtype=np.float32), label, np.asarray(template.affine)


def make_brain_subject(seed: int, template: np.ndarray, label: np.ndarray, affine: np.ndarray) -> tuple:
    """A synthetic subject: random affine warp of the template, bias field, noise and a varied affine."""
    from scipy.ndimage import affine_transform

    rng = np.random.default_rng(seed)
    shape = np.array(template.shape)
    warp = _rotation(rng, 10.0) @ np.diag(rng.uniform(0.9, 1.1, size=3))
    centre = (shape - 1) / 2.0
    offset = centre - warp @ centre + rng.uniform(-3, 3, size=3)
    image = affine_transform(template, warp, offset=offset, order=1, mode="constant")
    seg = affine_transform(label, warp, offset=offset, order=0, mode="constant")
    rel = (np.indices(template.shape, dtype=np.float32) - centre.reshape(3, 1, 1, 1)) / shape.reshape(3, 1, 1, 1)
    coeffs = rng.uniform(-0.3, 0.3, size=3)
    bias = np.clip(1 + np.tensordot(coeffs, rel, axes=1), 0.6, 1.4)
    image = image * bias * rng.uniform(0.7, 1.4) + rng.normal(0, rng.uniform(0.02, 0.05) * image.max(), shape)
    new_affine = affine.copy()
    new_affine[:3, 3] += rng.uniform(-10, 10, size=3)
    return image.astype(np.float32), seg.astype(np.uint8), new_affine


def build_mni152(root: Path, splits: dict[str, tuple[int, int]] | None = None) -> None:
    """Write the MNI152 brain tissue dataset (augmented subjects of the template) into ``root``."""
    template, label, affine = _mni152_volumes()
    def subject(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return make_brain_subject(seed, template, label, affine)

    _write_decathlon(root, "mni152", splits or BRAIN_SPLITS, subject, "TridentMNI152Tissue", BRAIN_LABELS)


BUILDERS = {"phantoms": build_phantoms, "mni152": build_mni152}


def demo_inputs(data_dir: Path) -> str:
    """The ``--input`` of the demo's ``infer`` step: the folder of held-out test images."""
    return str(Path(data_dir) / "imagesTs")
