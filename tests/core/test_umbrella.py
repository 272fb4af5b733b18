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


@pytest.mark.slow  # > 20 s on 2 cores: the slow pass (issue 17: default pass < 15 min)
@pytest.mark.parametrize("domain", ["nlp", "vision", "audio"])
def test_domain_fit_help_does_not_import_other_domains(domain: str) -> None:
    # transformers is not listed: torchmetrics (core) imports it for BERTScore whenever it is installed; nor is
    # torchaudio for vision: MONAI's signal transforms import it whenever it is installed
    others = {"nlp": ["trident_nlp"], "vision": ["monai", "nibabel", "trident_vision"],
              "audio": ["torchaudio", "soundfile", "trident_audio"]}
    banned = [m for d, mods in others.items() if d != domain for m in mods]
    if domain == "vision":
        banned = [m for m in banned if m not in ("torchaudio", "soundfile")]
    code = (f"import sys\nfrom trident_{domain}.cli import main\ntry:\n    main(['fit', '--help'])\n"
            f"except SystemExit:\n    pass\nprint('LOADED', [m for m in {banned!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LOADED []" in proc.stdout, proc.stdout[-500:] + proc.stderr[-2000:]
    assert "--trainer.max_epochs" in proc.stdout  # the real LightningCLI help, built from the classes


@pytest.mark.parametrize("domain", ["nlp", "vision", "audio"])
def test_domain_top_level_help_is_answered_without_torch(domain: str) -> None:
    """`trident-<domain> --help` (and `trident <domain> --help`) must not pay for importing torch and Lightning
    (benchmarks P6), and must still name every subcommand, config and preset the real CLI accepts."""
    from lightning.pytorch.cli import LightningCLI

    from trident_core.presets import presets

    spec = installed_domains()[domain]
    code = (f"import sys\nfrom trident_{domain}.cli import main\n"
            "from trident_core.umbrella import main as umbrella\n"
            f"for run, args in ((main, ['--help']), (umbrella, ['{domain}', '-h'])):\n"
            "    try:\n        run(args)\n    except SystemExit as stop:\n        assert stop.code == 0\n"
            "print('LOADED', [m for m in ('torch', 'lightning', 'transformers', 'numpy') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LOADED []" in proc.stdout, proc.stdout[-500:]
    help_text = proc.stdout.split(f"usage: trident-{domain}")[1]
    assert proc.stdout.count(f"usage: trident-{domain} ") == 2  # once from each command
    for sub in [*LightningCLI.subcommands(), "export", "infer", "sweep"]:
        assert f"\n  {sub} " in help_text, sub
    for name in [p.stem for p in spec.config_dir().glob("*.yaml")] + presets():
        assert name in help_text, name
    assert spec.description in help_text


def test_demo_runs_a_domain_end_to_end(tmp_path: Path) -> None:
    from toydomain import DOMAIN

    row = run_domain_demo(DOMAIN, tmp_path)
    assert row.error == ""
    assert row.metrics["test/acc"] > 0.9
    assert row.predictions == 64
    assert (Path(row.artifact) / "model.onnx").is_file()
    from trident_core.disk import disk_bytes

    # the disk column: the whole run folder (checkpoints, artifact, predictions, W&B files), each file once
    assert row.disk == disk_bytes([tmp_path / "toy"]) > disk_bytes([row.artifact, tmp_path / "toy" / "checkpoints"])
    again = run_domain_demo(DOMAIN, tmp_path)  # a second demo starts a fresh run
    assert again.error == ""
