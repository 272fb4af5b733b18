"""How a domain package describes itself to the core (entry point group ``trident.domains``).

Kept free of heavy imports: the umbrella command loads every installed domain's spec to list them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

ENTRY_POINT_GROUP = "trident.domains"


@dataclass(frozen=True)
class DomainSpec:
    """What the shared CLI needs to know about a domain.

    Attributes:
        name: Short name used on the command line (``nlp``, ``vision``, ``audio``).
        module_class: ``"package.module:Class"`` of the domain's ``TaskModule`` subclass.
        datamodule_class: ``"package.module:Class"`` of the domain's DataModule.
        config_package: Importable package holding ``default.yaml``, ``debug.yaml`` and ``demo.yaml``.
        monitor: Metric that ModelCheckpoint watches, e.g. ``"val/acc"``.
        monitor_mode: ``"max"`` or ``"min"``.
        infer: ``"package.module:function"`` with signature ``(artifact, input, output=None, batch_size=<the
            domain's default>) -> list[dict]``; it writes ``output`` itself (JSONL through
            :func:`trident_core.output.write_jsonl`, or the domain's files) and returns the rows.
        infer_options: ``"package.module:function"`` ``(group) -> None`` adding the domain's own ``infer`` options
            to an argparse argument group (e.g. audio's ``--decoder``); each defaults to ``None``, meaning "as the
            artifact stored it", and the ones given reach ``infer`` as keyword arguments named by their ``dest``.
            Empty: ``infer`` takes the core options only. Keep the module light (``infer --help`` imports it).
        demo_inputs: ``"package.module:function"`` returning an ``--input`` value for a built default dataset.
        demo_metrics: Test metrics that ``trident demo`` reports.
        links: ``(source, target)`` pairs linked with ``apply_on="instantiate"``.
        description: One line for ``--help``.
        serve: ``"package.module:Class"`` of the domain's serving adapter for ``trident serve`` (see
            :mod:`trident_core.serve`); empty: the domain cannot be served.
        quantize_check: ``"package.module:function"`` ``(float_artifact, int8_artifact, validation) -> dict``
            comparing both artifacts on a validation input for ``export --quantize int8`` (see
            :mod:`trident_core.quantize`); empty: the domain refuses ``--quantize`` with ``quantize_refusal``.
        quantize_refusal: Why the domain has no int8 export (shown when ``quantize_check`` is empty).
        demo_commands: ``"package.module:function"`` ``(data_dir, count) -> [{"text", "label"}]``: labelled held-out
            texts of the built default dataset, for the pipeline row of ``trident demo`` (a text domain).
        speak: ``"package.module:function"`` ``(texts, folder) -> manifest path``: the texts spoken, for the
            pipeline row of ``trident demo`` (a speech domain).
    """

    name: str
    module_class: str
    datamodule_class: str
    config_package: str
    monitor: str
    monitor_mode: str
    infer: str
    demo_inputs: str
    demo_metrics: tuple[str, ...]
    links: tuple[tuple[str, str], ...] = ()
    description: str = ""
    serve: str = ""
    quantize_check: str = ""
    quantize_refusal: str = ""
    demo_commands: str = ""
    speak: str = ""
    infer_options: str = ""

    def config_dir(self) -> Path:
        """Folder of the domain's YAML configs (found through the package, never a hard-coded path)."""
        module = importlib.import_module(self.config_package)
        return Path(next(iter(module.__path__)))

    def config_path(self, name: str) -> Path:
        """Path of a named config (``debug`` -> ``<config_dir>/debug.yaml``)."""
        return self.config_dir() / f"{name}.yaml"


def load_object(ref: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute."""
    module_name, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def installed_domains() -> dict[str, DomainSpec]:
    """Every installed domain, discovered through the ``trident.domains`` entry point group."""
    found: dict[str, DomainSpec] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        spec = ep.load()
        found[spec.name] = spec
    return found
