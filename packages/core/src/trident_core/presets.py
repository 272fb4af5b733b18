"""The core's trainer presets (``--preset NAME``): a folder of YAML files, shared by the light entry point
(``trident-<domain> --help``) and the full CLI. Light: no torch, no Lightning."""

from __future__ import annotations

from pathlib import Path

PRESET_DIR = Path(__file__).parent / "configs" / "presets"


def presets() -> list[str]:
    """Names accepted by ``--preset``."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
