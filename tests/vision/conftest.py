"""Shared fixtures of the vision tests: a small phantom dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
from vision_fixtures import SMALL_SPLITS


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4/1/2-case phantom dataset with its ``dataset.json`` (built once per session)."""
    from trident_vision.defaults import build_phantoms

    root = tmp_path_factory.mktemp("phantoms")
    build_phantoms(root, SMALL_SPLITS)
    return root
