"""``trident demo``: each installed domain end to end on its embedded default data.

Per domain: build the data, fit the ``demo`` recipe, test the best checkpoint, export the artifact (done
by ``ExportOnFitEnd``), run ``infer`` from the artifact on test inputs, and report metric, time, path and the disk
the run folder uses (checkpoints, artifact, W&B files: everything the run wrote). When the speech and the
text domain both ran, a pipeline row speaks held-out commands through both artifacts.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from trident_core.domain import DomainSpec, load_object


@dataclass
class DemoRow:
    """One domain's outcome."""

    domain: str
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    artifact: str = ""
    predictions: int = 0
    disk: int = 0
    folder: str = ""  # what the row wrote (its disk figure)
    error: str = ""


def run_domain_demo(spec: DomainSpec, output: Path, extra_args: list[str] | None = None) -> DemoRow:
    """Fit, test, export and infer one domain; failures are captured in the row, not raised."""
    from trident_core.cli import run_domain

    row = DemoRow(spec.name)
    start = time.perf_counter()
    root = output / spec.name
    data_dir = output / "data" / spec.name
    try:
        import shutil

        shutil.rmtree(root, ignore_errors=True)  # the demo's own run folder: each demo is a fresh run
        args = ["fit", "--config", "demo", "--trainer.default_root_dir", str(root), "--data.data_dir", str(data_dir)]
        cli = run_domain(spec, args + list(extra_args or []), exit_on_error=False)
        assert cli is not None
        results = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)
        merged = {k: float(v) for result in results for k, v in result.items()}
        row.metrics = {k: merged[k] for k in spec.demo_metrics if k in merged}
        artifact = root / "artifact"
        row.artifact = str(artifact)
        inputs = load_object(spec.demo_inputs)(data_dir)
        # each domain's own default batch (vision: the windows per call that training evaluated with)
        predictions = load_object(spec.infer)(str(artifact), inputs, str(root / "predictions"))
        row.predictions = len(predictions or [])
        import wandb

        wandb.finish()  # one W&B run per domain
    except Exception as err:  # the demo reports every domain, even when one fails
        row.error = f"{type(err).__name__}: {err}"
        traceback.print_exc()
    from trident_core.disk import disk_bytes

    row.seconds = time.perf_counter() - start
    row.disk, row.folder = disk_bytes([root]), str(root)
    return row


def run_pipeline_demo(speech: DomainSpec, text: DomainSpec, output: Path, count: int = 24) -> DemoRow:
    """The call-center row: held-out commands of the text domain spoken by the speech domain's synthesiser, run
    through both artifacts (``trident pipeline``), with the intent accuracy from speech next to the intent
    accuracy from the same texts typed (the text artifact alone), so the cost of recognition errors is seen.

    Uses the artifacts and data that :func:`run_domain_demo` left in ``output``; failures are captured in the row.
    """
    from trident_core.serve import pipeline

    row = DemoRow(f"pipeline ({speech.name} -> {text.name})")
    start = time.perf_counter()
    folder = output / "pipeline"
    try:
        commands = load_object(text.demo_commands)(output / "data" / text.name, count)
        manifest = load_object(speech.speak)([c["text"] for c in commands], folder / "spoken")
        artifacts = [str(output / speech.name / "artifact"), str(output / text.name / "artifact")]
        spoken = pipeline(artifacts, manifest, str(folder / "pipeline.jsonl"))
        typed_file = folder / "typed.txt"
        typed_file.write_text("".join(c["text"] + "\n" for c in commands), encoding="utf-8")
        typed = load_object(text.infer)(artifacts[1], str(typed_file))
        labels = [c["label"] for c in commands]
        row.metrics = {
            "intent_acc_speech": sum(r["intent"] == y for r, y in zip(spoken, labels, strict=True)) / len(labels),
            "intent_acc_typed": sum(r["intent"] == y for r, y in zip(typed, labels, strict=True)) / len(labels),
        }
        row.artifact = " + ".join(artifacts)
        row.predictions = len(spoken)
    except Exception as err:  # the demo reports every row, even when one fails
        row.error = f"{type(err).__name__}: {err}"
        traceback.print_exc()
    from trident_core.disk import disk_bytes

    row.seconds = time.perf_counter() - start
    row.disk, row.folder = disk_bytes([folder]), str(folder)
    return row


def pipeline_pairs(domains: dict[str, DomainSpec], rows: list[DemoRow]) -> list[tuple[DomainSpec, DomainSpec]]:
    """The pipelines ``trident demo`` can show: both domains ran without error and offer the demo hooks."""
    from trident_core.serve import PIPELINES

    ok = {row.domain for row in rows if not row.error}
    return [(domains[a], domains[b]) for a, b in sorted(PIPELINES)
            if a in ok and b in ok and domains[a].speak and domains[b].demo_commands]


def print_summary(rows: list[DemoRow]) -> None:
    """A table of metric, time, artifact and disk use per domain."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="trident demo")
    from trident_core.disk import human

    for column in ("domain", "test metrics", "time", "artifact", "predictions", "disk"):
        table.add_column(column)
    for row in rows:
        metrics = ", ".join(f"{k}={v:.3f}" for k, v in row.metrics.items()) or f"[red]{row.error}[/red]"
        table.add_row(row.domain, metrics, f"{row.seconds:.0f}s", row.artifact, str(row.predictions), human(row.disk))
    Console().print(table)
    roots = sorted({row.folder for row in rows if row.folder})
    if roots:
        Console().print(f"disk: {human(sum(row.disk for row in rows))} in {', '.join(roots)} (checkpoints, artifact, "
                        "predictions and W&B files); delete a folder to free it")
