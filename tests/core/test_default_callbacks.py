"""Default callbacks live in the config (`trainer.callbacks`), where users see, replace and extend them; the CLI
adds only the two safety callbacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, ProgressBar

from toydomain import DOMAIN, main
from trident_core.callbacks import (
    ExportOnFitEnd,
    LearningRateTracker,
    NonFiniteGuard,
    OutOfMemoryHint,
    ProgressOnException,
    RngState,
    Throughput,
)
from trident_core.cli import TridentCLI, expand_args
from trident_core.tracking import ConfigToLogger

SAFETY = [ProgressOnException, RngState]
# callbacks with their own options (--checkpoint.*, ...; the config saver: LightningCLI's save_config_callback)
OWN_OPTIONS = [ModelCheckpoint, ModelCheckpoint, NonFiniteGuard, ExportOnFitEnd, ConfigToLogger]


class Built(TridentCLI):
    """Builds the objects of `fit` and stops there."""

    def _run_subcommand(self, subcommand: str) -> None:
        return None


def _callbacks(tmp_path: Path, *extra: str) -> list[type]:
    cli = Built(DOMAIN, expand_args(DOMAIN, ["fit", "--config", "debug", "--trainer.default_root_dir",
                                             str(tmp_path / "run"), "--data.data_dir", str(tmp_path / "d"), *extra]))
    found = [type(cb) for cb in cli.trainer.callbacks]
    bars = [kind for kind in found if issubclass(kind, ProgressBar)]  # Lightning's own, Rich on a terminal
    assert len(bars) == ("--trainer.enable_progress_bar=false" not in extra)
    return [kind for kind in found if kind not in bars]


def test_defaults_are_the_configs_list_then_the_safety_callbacks(tmp_path: Path) -> None:
    found = _callbacks(tmp_path)
    assert found[:3] == [OutOfMemoryHint, LearningRateTracker, Throughput]  # the OOM hint first
    assert sorted(found[3:], key=str) == sorted([*OWN_OPTIONS, *SAFETY], key=str)


def test_an_empty_list_leaves_only_the_safety_callbacks(tmp_path: Path) -> None:
    found = _callbacks(tmp_path, "--trainer.callbacks=[]", "--trainer.enable_progress_bar=false")
    assert sorted(found, key=str) == sorted([*OWN_OPTIONS, *SAFETY], key=str)


def test_appending_keeps_the_defaults(tmp_path: Path) -> None:
    found = _callbacks(tmp_path, "--trainer.callbacks+=EarlyStopping", "--trainer.callbacks.monitor=val/acc")
    assert found[:4] == [OutOfMemoryHint, LearningRateTracker, Throughput, EarlyStopping]


def test_help_names_the_safety_callbacks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Always added, for safety: ProgressOnException" in text and "--trainer.callbacks+=CLASS" in text


@pytest.mark.slow  # > 20 s on 2 cores: the slow pass (issue 17: default pass < 15 min)
@pytest.mark.parametrize(("domain", "config", "early_stopping"), [
    ("nlp", "default", True), ("nlp", "debug", False), ("audio", "default", True), ("audio", "demo", False),
])
def test_domain_configs_layer_on_the_core_defaults(domain: str, config: str, early_stopping: bool) -> None:
    """The recipes add EarlyStopping to the core defaults; the debug and demo runs keep the defaults without it."""
    out = subprocess.run([sys.executable, "-m", f"trident_{domain}", "fit", "--config", config, "--print_config"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    paths = [cb["class_path"] for cb in yaml.safe_load(out)["trainer"]["callbacks"]]
    core = ["trident_core.callbacks.OutOfMemoryHint", "trident_core.callbacks.LearningRateTracker",
            "trident_core.callbacks.Throughput"]
    assert paths == core + ["lightning.pytorch.callbacks.EarlyStopping"] * early_stopping
