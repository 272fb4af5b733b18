"""Helpers of the vision tests (a plain module: test files import it by name)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SMALL_SPLITS = {"training": (4, 1000), "validation": (1, 2000), "test": (2, 3000)}


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write ``array`` as a NIfTI file (affine defaults to identity)."""
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path
