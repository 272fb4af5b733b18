"""The `trident` umbrella command: domain discovery through entry points, forwarding, demo wiring."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trident_core.demo import run_domain_demo
from trident_core.domain import installed_domains
from trident_core.umbrella import main


def test_domains_are_discovered_through_entry_points() -> None:
    domains = installed_domains()
    assert {"nlp", "vision", "audio"} <= set(domains)
    for name, spec in domains.items():
        assert spec.name == name and spec.config_path("default").is_file()
        assert spec.config_path("debug").is_file() and spec.config_path("demo").is_file()


def test_help_lists_domains(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "demo" in out and "nlp" in out and "vision" in out and "audio" in out


@pytest.mark.parametrize("domain", ["nlp", "vision", "audio"])
def test_domain_help_does_not_import_other_domains(domain: str) -> None:
    # transformers is not listed: torchmetrics (core) imports it for BERTScore whenever it is installed
    others = {"nlp": ["trident_nlp"], "vision": ["monai", "nibabel", "trident_vision"],
              "audio": ["torchaudio", "soundfile", "trident_audio"]}
    banned = [m for d, mods in others.items() if d != domain for m in mods]
    code = (f"import sys\nfrom trident_{domain}.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
            f"    pass\nprint('LOADED', [m for m in {banned!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LOADED []" in proc.stdout, proc.stdout[-500:] + proc.stderr[-2000:]


def test_demo_runs_a_domain_end_to_end(tmp_path: Path) -> None:
    from toydomain import DOMAIN

    row = run_domain_demo(DOMAIN, tmp_path)
    assert row.error == ""
    assert row.metrics["test/acc"] > 0.9
    assert row.predictions == 64
    assert (Path(row.artifact) / "model.onnx").is_file()
    again = run_domain_demo(DOMAIN, tmp_path)  # a second demo starts a fresh run
    assert again.error == ""
