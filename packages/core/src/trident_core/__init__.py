"""Trident core: the library every Trident domain builds on.

Public names are imported lazily, so light entry points (``trident --help``, artifact inference) do not
pay for torch and Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TaskModule": "trident_core.module",
    "TridentDataModule": "trident_core.data",
    "BucketSampler": "trident_core.data",
    "EpochShuffleSampler": "trident_core.data",
    "build_once": "trident_core.data",
    "seeded_split": "trident_core.data",
    "ExportSpec": "trident_core.export",
    "ExportResult": "trident_core.export",
    "export_artifact": "trident_core.export",
    "export_checkpoint": "trident_core.export",
    "load_checkpoint": "trident_core.export",
    "Artifact": "trident_core.artifact",
    "load_artifact": "trident_core.artifact",
    "TridentCLI": "trident_core.cli",
    "run_domain": "trident_core.cli",
    "DomainSpec": "trident_core.domain",
    "TridentWandbLogger": "trident_core.tracking",
    "TridentError": "trident_core.errors",
    "DataError": "trident_core.errors",
    "ConfigError": "trident_core.errors",
    "ExportError": "trident_core.errors",
    "ArtifactError": "trident_core.errors",
    "CheckpointError": "trident_core.errors",
    "ResourceError": "trident_core.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'trident_core' has no attribute {name!r}")
