"""matplotlib is optional (the `trident-nlp[plots]` extra): `test` without it still writes the report, skips the
two PNGs and says why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Replaces the path finder with one that neither finds matplotlib's modules nor its installed metadata (libraries
# such as torchmetrics check the metadata before importing), as when it is not installed; then runs
# `trident-nlp test --config debug`.
_SCRIPT = """
import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import PathFinder
HIDDEN = {"matplotlib", "mpl_toolkits"}
class WithoutMatplotlib(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        return None if name.split(".")[0] in HIDDEN else PathFinder.find_spec(name, path, target)
    def find_distributions(self, *args, **kwargs):
        for dist in PathFinder.find_distributions(*args, **kwargs):
            if (dist.metadata["Name"] or "").lower() != "matplotlib":
                yield dist
sys.meta_path[:] = [WithoutMatplotlib() if f is PathFinder else f for f in sys.meta_path]
import torch
torch.set_num_threads(1)
from trident_nlp.cli import main
root = sys.argv[1]
main(["test", "--config", "debug", "--trainer.default_root_dir", root + "/run", "--data.data_dir", root + "/data"])
assert "matplotlib" not in sys.modules
"""


@pytest.mark.slow  # a subprocess that imports the nlp stack and runs `test`: 83 s measured on a loaded 2-core box
def test_test_without_matplotlib_writes_the_report_and_notes_the_skipped_plots(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    assert (run / "test_report.json").is_file()
    assert not list(run.glob("*.png"))
    log = done.stdout + done.stderr
    for name in ("confusion_matrix.png", "oos_curve.png"):
        assert f"matplotlib is not installed: {name} skipped (pip install 'trident-nlp[plots]'" in log, log[-3000:]
