"""Quality floors: each domain's `demo` config, run through its CLI (fit, then `test --ckpt_path best`, as
`trident demo` does), reaches the test figure the README's demo table states, within a stated margin.

The figures are read from README.md itself, so the table and this test cannot drift apart: a change that makes
a domain learn worse (or better) fails here until the README is re-measured with `uv run trident demo`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import wandb

from trident_core.cli import run_domain
from trident_core.domain import installed_domains

README = Path(__file__).resolve().parents[1] / "README.md"

# domain -> (README words before the figure, logged test metric, margin). The margins allow for run-to-run noise
# (float reductions that differ with thread count and CPU vector width, so a few test items flip) and stay far
# from what a model that stopped learning scores: nlp chance accuracy is 0.04 over 27 classes, an untrained
# UNet's Dice is near 0, and a CTC model that emits nothing has WER 1.0.
FLOORS = {
    "nlp": ("accuracy", "test/acc", 0.05),
    "vision": ("mean Dice", "test/dice", 0.05),
    "audio": ("WER", "test/wer", 0.08),
}


def readme_figure(domain: str, words: str) -> float:
    """The number after ``words`` in the README demo table's row for ``domain``."""
    row = re.search(rf"^\| {domain} \| (.*)$", README.read_text(), flags=re.MULTILINE)
    assert row, f"README.md has no demo table row for {domain}"
    figure = re.search(rf"\b{re.escape(words)} (\d+\.\d+)", row.group(1))
    assert figure, f"README.md's {domain} demo row has no '{words} <number>'"
    return float(figure.group(1))


@pytest.mark.slow
@pytest.mark.parametrize("domain", sorted(FLOORS))
def test_demo_config_reaches_the_readme_figure(domain: str, tmp_path: Path) -> None:
    words, metric, margin = FLOORS[domain]
    expected = readme_figure(domain, words)
    spec = installed_domains()[domain]
    base = ["--config", "demo", "--trainer.default_root_dir", str(tmp_path / "run"),
            "--data.data_dir", str(tmp_path / "data")]
    # audio's demo stops at max_time 4 min; a loaded CI machine would train less than the idle one that measured
    # the README, so the floor lifts the time limit (on an idle 2-core machine all 8 epochs fit in it).
    extra = ["--trainer.max_time", "null"] if domain == "audio" else []
    try:
        run_domain(spec, ["fit", *base, *extra], exit_on_error=False)
        cli = run_domain(spec, ["test", *base, "--ckpt_path", "best"], exit_on_error=False)
        assert cli is not None
        measured = float(cli.trainer.callback_metrics[metric])
    finally:
        wandb.finish()  # one W&B run per domain, as `trident demo` does
    print(f"{domain}: {metric} = {measured:.4f} (README {expected})")
    assert abs(measured - expected) <= margin, (
        f"{domain} demo {metric} = {measured:.3f}, README states {expected} (margin {margin}): "
        "a regression, or re-measure with `uv run trident demo` and update README.md"
    )
