"""Settings for the whole test run: no network, quiet and deterministic third-party libraries, and no files outside
the tests' own folders (HOME and W&B's folders point at each test's ``tmp_path``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# W&B's console capture fights pytest's own capture of stdout; the tests read run files, not the console.
os.environ.setdefault("WANDB_CONSOLE", "off")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# W&B's folders that default to the home folder (artifact staging, cache, settings); Trident's logger puts the first
# two in the run folder unless they are set (tests/core/test_run_disk.py).
WANDB_HOME_VARS = ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DIR", "WANDB_ARTIFACT_DIR")


def home_of(tmp_path: Path) -> Path:
    """The home folder :func:`_home_in_tmp_path` gives the test whose ``tmp_path`` this is."""
    return tmp_path.with_name(f"{tmp_path.name}-home")


@pytest.fixture(scope="session")
def _import_caches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """matplotlib's font cache, built once for the session (imported by torchmetrics; subprocesses rebuild it)."""
    return tmp_path_factory.mktemp("import-caches")


@pytest.fixture(autouse=True)
def _home_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _import_caches: Path) -> Iterator[None]:
    """Every test, and every process it starts, has its own home folder (``<tmp_path>-home``, beside ``tmp_path``
    so tests that list ``tmp_path`` see only what they wrote) and no W&B folder settings: what a run writes lands in
    its own folder or in this test's home, never in the real one."""
    home = home_of(tmp_path)
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MPLCONFIGDIR", str(_import_caches / "matplotlib"))
    # Trident's logger sets WANDB_DATA_DIR and WANDB_CACHE_DIR itself (to the run folder): restore them by hand,
    # monkeypatch would not undo a variable it did not set
    keys = ("XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", *WANDB_HOME_VARS)
    saved = {key: os.environ.pop(key, None) for key in keys}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
