"""Loading an exported artifact for inference: numpy + onnxruntime only (no torch, no Lightning).

An artifact folder holds ``model.onnx``, ``model.pt2``, ``weights.safetensors`` and ``metadata.json``
(plus domain files such as a tokenizer). See :func:`trident_core.export.export_artifact`.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from trident_core.errors import ArtifactError

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "domain", "inputs", "outputs", "files", "domain_metadata")
REQUIRED_FILES = ("onnx", "torch_export", "weights")
_DTYPES = {"int64": np.int64, "int32": np.int32, "float32": np.float32, "float16": np.float16, "bool": np.bool_}


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Read and validate ``metadata.json`` of an artifact folder.

    Raises:
        ArtifactError: naming the folder and the missing or wrong key, when the artifact is not usable.
    """
    folder = Path(path)
    meta_path = folder / "metadata.json"
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: artifact folder not found; pass the folder written by `export`")
    if not meta_path.is_file():
        raise ArtifactError(f"{meta_path}: missing; this folder is not a Trident artifact (re-run `export`)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactError(f"{meta_path}: not valid JSON ({err}); re-run `export`") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{meta_path}: expected a JSON object at the top level")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ArtifactError(f"{meta_path}: missing required key(s) {missing}; re-run `export`")
    if meta["format_version"] != FORMAT_VERSION:
        raise ArtifactError(
            f"{meta_path}: format_version {meta['format_version']!r} is not supported (this Trident reads "
            f"{FORMAT_VERSION}); re-export the checkpoint with this version"
        )
    for key in ("inputs", "outputs"):
        spec = meta[key]
        if not isinstance(spec, list) or not spec or not all(isinstance(s, dict) and "name" in s for s in spec):
            raise ArtifactError(f"{meta_path}: [{key}] must be a non-empty list of {{name, dtype, shape}} objects")
    files = meta["files"]
    if not isinstance(files, dict):
        raise ArtifactError(f"{meta_path}: [files] must be an object")
    for key in REQUIRED_FILES:
        name = files.get(key)
        if not isinstance(name, str) or not name:
            raise ArtifactError(f"{meta_path}: [files.{key}] missing")
        target = (folder / name).resolve()
        if folder.resolve() not in target.parents:
            raise ArtifactError(f"{meta_path}: [files.{key}] {name!r} points outside the artifact folder")
        if not target.is_file():
            raise ArtifactError(f"{folder / name}: missing from the artifact; re-run `export`")
    return meta


def default_providers() -> list[str]:
    """onnxruntime execution providers to serve with: CUDA first when onnxruntime-gpu offers it, else CPU."""
    import onnxruntime as ort

    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]


def check_providers(providers: list[str]) -> list[str]:
    """``providers`` when onnxruntime offers every one of them.

    Raises:
        ArtifactError: naming the unavailable providers and the available ones.
    """
    import onnxruntime as ort

    missing = [p for p in providers if p not in ort.get_available_providers()]
    if missing:
        raise ArtifactError(f"--providers {missing} not available in this onnxruntime; available: "
                            f"{ort.get_available_providers()} (CUDA needs onnxruntime-gpu)")
    return providers


class Artifact:
    """An exported model, run with onnxruntime.

    Args:
        path: The artifact folder.
        threads: onnxruntime intra-op threads; ``None`` lets onnxruntime choose (all cores).
        providers: onnxruntime execution providers in order of preference; ``None``: CPU.
    """

    def __init__(self, path: str | Path, threads: int | None = None, providers: list[str] | None = None) -> None:
        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        self.threads = threads
        self.providers = list(providers) if providers else ["CPUExecutionProvider"]

    @property
    def domain_metadata(self) -> dict[str, Any]:
        """What the domain stored: preprocessing parameters, labels, vocabulary, thresholds."""
        return self.metadata["domain_metadata"]

    @property
    def input_names(self) -> list[str]:
        return [spec["name"] for spec in self.metadata["inputs"]]

    @property
    def output_names(self) -> list[str]:
        return [spec["name"] for spec in self.metadata["outputs"]]

    def file(self, name: str) -> Path:
        """Path of an extra file shipped in the artifact (e.g. ``tokenizer.json``)."""
        target = (self.path / name).resolve()
        if self.path.resolve() not in target.parents or not target.is_file():
            raise ArtifactError(f"{self.path}: the artifact has no file {name!r}; re-run `export`")
        return target

    @cached_property
    def session(self) -> Any:
        """The onnxruntime ``InferenceSession`` (created on first use)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads = self.threads or int(os.environ.get("TRIDENT_ORT_THREADS", "0"))
        if threads:
            options.intra_op_num_threads = threads
        onnx_path = self.path / self.metadata["files"]["onnx"]
        try:
            return ort.InferenceSession(str(onnx_path), options, providers=self.providers)
        except Exception as err:  # onnxruntime raises its own untyped errors for corrupt graphs
            raise ArtifactError(f"{onnx_path}: onnxruntime cannot load it ({err}); re-run `export`") from None

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on named numpy inputs; returns the named outputs.

        Raises:
            ArtifactError: when an input is missing, unexpected or of the wrong rank.
        """
        expected = {spec["name"]: spec for spec in self.metadata["inputs"]}
        unknown = sorted(set(feeds) - set(expected))
        missing = sorted(set(expected) - set(feeds))
        if unknown or missing:
            raise ArtifactError(f"{self.path}: inputs {sorted(feeds)} do not match the model's {sorted(expected)}")
        cast: dict[str, np.ndarray] = {}
        for name, value in feeds.items():
            spec = expected[name]
            array = np.asarray(value, dtype=_DTYPES.get(spec.get("dtype", "")))
            if "shape" in spec and array.ndim != len(spec["shape"]):
                raise ArtifactError(
                    f"{self.path}: input {name!r} has {array.ndim} dimensions, the model takes "
                    f"{len(spec['shape'])} {spec['shape']}"
                )
            cast[name] = np.ascontiguousarray(array)
        outputs = self.session.run(None, cast)
        return dict(zip(self.output_names, outputs, strict=True))


def load_artifact(path: str | Path, threads: int | None = None, providers: list[str] | None = None) -> Artifact:
    """Open and validate an artifact folder. See :class:`Artifact`."""
    return Artifact(path, threads=threads, providers=providers)
