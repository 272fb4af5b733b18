"""Package boundaries: core imports no domain; domains never import each other (checked on the source)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ("nlp", "vision", "audio")
# each domain's own heavy libraries (audio's pretrained encoders are transformers models: trident_audio.hf, extra `hf`)
HEAVY = {"nlp": {"transformers", "tokenizers"}, "vision": {"monai", "nibabel"},
         "audio": {"torchaudio", "soundfile", "transformers"}}


def _imports(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / "packages" / package / "src").rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_core_imports_no_domain() -> None:
    banned = {f"trident_{d}" for d in DOMAINS} | set().union(*HEAVY.values())
    offenders = {path: names & banned for path, names in _imports("core").items() if names & banned}
    assert offenders == {}


@pytest.mark.parametrize("domain", DOMAINS)
def test_domains_do_not_import_each_other(domain: str) -> None:
    others = {f"trident_{d}" for d in DOMAINS if d != domain}
    others |= set().union(*(HEAVY[d] for d in DOMAINS if d != domain)) - HEAVY[domain]
    offenders = {path: names & others for path, names in _imports(domain).items() if names & others}
    assert offenders == {}


@pytest.mark.parametrize("domain", DOMAINS)
def test_model_files_do_not_import_lightning(domain: str) -> None:
    model = ROOT / "packages" / domain / "src" / f"trident_{domain}" / "model.py"
    if not model.exists():
        pytest.fail(f"{model} is missing: every domain has a model.py")
    assert "lightning" not in _imports(domain)[str(model.relative_to(ROOT))]
