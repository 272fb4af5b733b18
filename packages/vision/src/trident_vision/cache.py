"""The dataset cache of ``SegmentationDataModule``: ``memory``, ``disk`` or ``none`` (``data.cache``).

* ``memory``: MONAI ``CacheDataset`` keeps every preprocessed volume in RAM (fastest; resident memory grows with
  the dataset: about 8 bytes per resampled voxel, image and label as float32).
* ``disk``: MONAI ``PersistentDataset`` writes each preprocessed volume once to ``<cache_dir>/<key>/`` and reads it
  back at every later access, so resident memory holds only the volumes of the current batch.
* ``none``: every access reads and preprocesses the NIfTI files again (least memory and disk, slowest).

A disk cache is never reused stale: the folder ``<key>`` is a digest of everything that shapes a cached volume
(the preprocessing dict, label values, the split kind and its padding, the MONAI version), and each file's name
is a digest of the entry's paths with their sizes and modification times, so an edited file is preprocessed again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trident_core.errors import ConfigError

CACHE_KINDS = ("memory", "disk", "none")


def check_cache(cache: str) -> str:
    """``cache`` if it is one of :data:`CACHE_KINDS`, else a ``ConfigError`` naming ``data.cache``."""
    if cache not in CACHE_KINDS:
        raise ConfigError(f"data.cache must be one of {CACHE_KINDS} (memory: CacheDataset in RAM; disk: "
                          f"PersistentDataset under data.cache_dir; none: no cache), got {cache!r}")
    return cache


def cache_key(kind: str, preprocessing: dict[str, Any], label_values: Sequence[int],
              roi_size: Sequence[int] | None) -> str:
    """A short digest of what determines a cached volume of split kind ``kind`` (``train`` pads to the ROI)."""
    import monai

    spec = {"kind": kind, "preprocessing": preprocessing, "label_values": [int(v) for v in label_values],
            "pad": [int(r) for r in roi_size] if roi_size is not None else None, "monai": monai.__version__,
            "layout": 1}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def entry_hash(entry: dict[str, Any]) -> bytes:
    """Digest of a datalist entry: its paths with each file's size and modification time (ns)."""

    def stamp(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [stamp(v) for v in value]
        if isinstance(value, (str, os.PathLike)) and os.path.isfile(value):
            st = os.stat(value)
            return [os.path.abspath(value), st.st_size, st.st_mtime_ns]
        return str(value)

    described = {k: stamp(v) for k, v in sorted(entry.items())}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest().encode()


def cached_dataset(cache: str, entries: list[dict[str, Any]], transform: Callable[..., Any], *,
                   cache_dir: Path | None = None, key: str = "", cache_rate: float = 1.0,
                   num_workers: int = 2) -> Any:
    """The MONAI dataset of ``entries`` for cache kind ``cache``; ``disk`` writes under ``cache_dir / key``."""
    from monai.data import CacheDataset, Dataset, PersistentDataset

    check_cache(cache)
    if cache == "memory":
        return CacheDataset(entries, transform, cache_rate=cache_rate, num_workers=num_workers, progress=False,
                            copy_cache=True)
    if cache == "disk":
        if cache_dir is None:
            raise ConfigError("data.cache disk needs a folder: set data.cache_dir")
        # files hold plain tensors (MONAI's default, track_meta=False), read back with torch.load(weights_only=True):
        # the same voxels without the MetaTensor metadata, which training and evaluation do not use
        return PersistentDataset(entries, transform, cache_dir=Path(cache_dir) / key, hash_func=entry_hash)
    return Dataset(entries, transform)
