"""The one shape of a domain's artifact metadata: a dataclass that the writer (export) and the reader (inference)
share, so every value crosses the seam between training and serving once, by name, and is checked on the way.

A domain declares its fields once::

    @dataclass(frozen=True)
    class IntentMetadata(DomainMetadata):
        TASK: ClassVar[str] = "intent_classification"
        labels: list[str]
        threshold: float | None = None

``export_spec`` writes ``IntentMetadata(...).to_dict()`` into ``metadata.json`` (``domain_metadata``); inference
reads it back with ``IntentMetadata.from_artifact(artifact)``. A missing key, an unknown key or a wrong task is an
:class:`~trident_core.errors.ArtifactError` naming the file and the keys. Light: no torch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Self

from trident_core.errors import ArtifactError


@dataclasses.dataclass(frozen=True)
class DomainMetadata:
    """Base of every domain's metadata dataclass (subclass it once; fields are plain JSON values)."""

    TASK: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able dict written as the artifact's ``domain_metadata`` (``task`` first)."""
        return {"task": self.TASK, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, raw: Any, source: str | Path = "metadata.json") -> Self:
        """Rebuild from ``domain_metadata``.

        Raises:
            ArtifactError: not an object, another task, or missing/unknown keys (naming ``source`` and the keys).
        """
        if not isinstance(raw, dict):
            raise ArtifactError(f"{source}: [domain_metadata] must be an object, got {type(raw).__name__}")
        task = raw.get("task")
        if task != cls.TASK:
            raise ArtifactError(f"{source}: [domain_metadata.task] is {task!r}, this reader takes {cls.TASK!r}; "
                                "use the matching domain's command (or re-export the checkpoint)")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [name for name, f in fields.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in raw]
        unknown = sorted(set(raw) - set(fields) - {"task"})
        if missing or unknown:
            parts = [f"missing {missing}" if missing else "", f"unknown {unknown}" if unknown else ""]
            raise ArtifactError(f"{source}: [domain_metadata] {' and '.join(p for p in parts if p)} key(s) for "
                                f"{cls.__name__}; the artifact comes from another Trident version: re-export it")
        return cls(**{name: raw[name] for name in fields if name in raw})

    @classmethod
    def from_artifact(cls, artifact: Any) -> Self:
        """Read from an opened :class:`~trident_core.artifact.Artifact`."""
        return cls.from_dict(artifact.domain_metadata, Path(artifact.path) / "metadata.json")
