"""``python -m benchmarks``: run the comparisons in one process and write ``results/<machine>.{json,md}``."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks.common import Row, Settings, check_row, load_average

# id -> "module:function"; each function takes Settings and returns a list of Rows
BENCHMARKS = {
    "P1": "benchmarks.overhead:run",
    "P2": "benchmarks.nlp_finetune:run",
    "P3": "benchmarks.nlp_inference:run",
    "P4": "benchmarks.vision:run_training",
    "P4b": "benchmarks.vision:run_inference",
    "P5": "benchmarks.audio:run",
    "P6": "benchmarks.cli_startup:run",
    "P7": "benchmarks.gpu:run_rows",
    "P8": "benchmarks.serving:run",
    "Q8": "benchmarks.quantized:run",
    "P9": "benchmarks.compile:run",
    "LOAD": "benchmarks.loaders:run",
}
RESULTS = Path(__file__).parent / "results"


def machine_slug() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0).lower().replace(" ", "-")
    return f"cpu-{os.cpu_count()}core"


def environment() -> dict[str, Any]:
    import lightning
    import onnxruntime
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def run_one(key: str, settings: Settings) -> list[Row]:
    module_name, _, func = BENCHMARKS[key].partition(":")
    start = time.perf_counter()
    load_before = load_average()
    try:
        rows = getattr(importlib.import_module(module_name), func)(settings)
    except Exception as err:  # a broken arm must not lose the others' results
        traceback.print_exc()
        rows = [Row(id=key, compare="(failed)", baseline_name="", baseline=None, trident=None, unit="", ratio=None,
                    ratio_def="", target="", met=None, command=f"uv run python -m benchmarks --only {key}", arms=[],
                    repetitions=0, spread=None, verdict="report", notes=f"error: {type(err).__name__}: {err}")]
    elapsed = time.perf_counter() - start
    for row in rows:
        row.extra.setdefault("load_average_1min", [load_before, load_average()])
        row.extra.setdefault("section_wall_s", round(elapsed, 1))
    print(f"[{key}] {elapsed:.1f}s", file=sys.stderr)
    for row in rows:
        print(f"  {row.id} {row.compare}: baseline {row.baseline} trident {row.trident} {row.unit} "
              f"ratio {row.ratio} {row.spread} target {row.target} {row.verdict} {row.notes}", file=sys.stderr)
        for problem in check_row(row.as_dict()):
            print(f"  SCHEMA: {problem}", file=sys.stderr)
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    dates: dict[str, list[str]] = {}
    for row in result["rows"]:
        ids = dates.setdefault(row.get("measured", result["date"]), [])
        if row["id"] not in ids:
            ids.append(row["id"])
    first, *later = sorted(dates)
    rerun = "".join(f"; {', '.join(dates[d])} re-measured {d}" for d in later)
    lines = [
        f"Measured {first}{rerun} on `{result['machine']}` ({env['cores']} cores, {env['cpu']}, "
        f"torch {env['torch']}, "
        f"onnxruntime {env['onnxruntime']}){' in quick mode' if result['quick'] else ''}. "
        f"1-min load average during the last run: {result['load_average']}.",
        "",
        "| id | compared | baseline | baseline | Trident | unit | ratio (median, range) | reps | target | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["rows"]:
        verdict = row.get("verdict", "-")
        spread = row.get("spread")
        ratio = _fmt(row["ratio"]) + (f" ({_fmt(spread[0])}-{_fmt(spread[1])})" if spread else "")
        lines.append(
            f"| {row['id']} | {row['compare']} | {row['baseline_name']} | {_fmt(row['baseline'])} | "
            f"{_fmt(row['trident'])} | {row['unit']} | {ratio} | {row.get('repetitions', '-')} | {row['target']} | "
            f"{'**missed**' if verdict == 'missed' else verdict} |"
        )
    lines += ["", "Ratio: the median of the per-repetition ratios, range in brackets; `ratio_def` in the JSON says "
              "which way round. Verdict met/missed only where the whole range is on one side of the target.", "",
              "Arms (precision, trainable parameters, batch, threads, peak RSS MiB) and notes:", ""]
    for row in result["rows"]:
        arms = "; ".join(f"{a['name']}: {a['precision']}, {a['trainable_params'] or '-'} trainable, batch "
                         f"{a['batch'] or '-'}, {a['threads']} threads, {_fmt(a['peak_rss_mb'])} MiB"
                         for a in row.get("arms", []))
        lines.append(f"- {row['id']} {row['compare']} ({row['command']}): {arms}. {row['notes']}")
    return "\n".join(lines) + "\n"


def write(out: Path, machine: str, args: argparse.Namespace, keys: list[str], rows: list[Row]) -> dict[str, Any]:
    """Write ``<machine>.json`` and ``.md``; with ``--only``, rows of the other benchmarks are kept."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    result = {
        "date": now,
        "machine": machine,
        "quick": args.quick,
        "command": "uv run python -m benchmarks" + (f" --only {args.only}" if args.only else "")
        + (" --quick" if args.quick else ""),
        "environment": environment(),
        "load_average": load_average(),
        "rows": [{**r.as_dict(), "measured": now} for r in rows],
    }
    path = out / f"{machine}.json"
    if args.only and path.is_file():
        old = json.loads(path.read_text())
        kept = [{"measured": old["date"], **r} for r in old.get("rows", [])
                if r["id"] not in keys and old.get("quick") == args.quick]
        result["rows"] = kept + result["rows"]
        order = list(BENCHMARKS)
        result["rows"].sort(key=lambda r: order.index(r["id"]) if r["id"] in order else len(order))
    text = json.dumps(result, indent=2)
    path.write_text(text + "\n")
    result = json.loads(text)  # what the file holds (seed keys as strings, tuples as lists), returned as such
    (out / f"{machine}.md").write_text(markdown(result))
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", default=None, help="comma-separated ids (" + ",".join(BENCHMARKS) + ")")
    parser.add_argument("--quick", action="store_true", help="seconds-long settings (the smoke test); not figures")
    parser.add_argument("--machine", default=None, help="results file name (default: cpu-<N>core or the GPU name)")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    parser.add_argument("--threads", type=int, default=None, help="torch/onnxruntime threads (default: all cores)")
    args = parser.parse_args(argv)
    keys = list(BENCHMARKS) if args.only is None else [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = [k for k in keys if k not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown id(s) {unknown}; choose from {list(BENCHMARKS)}")

    import torch

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    os.environ.setdefault("TRIDENT_ORT_THREADS", str(threads))
    os.environ.setdefault("WANDB_MODE", "disabled")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = args.machine or machine_slug()
    rows: list[Row] = []
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="trident-bench-") as tmp:
        settings = Settings(quick=args.quick, workdir=Path(tmp), threads=threads)
        for key in keys:
            (settings.workdir / key).mkdir(parents=True, exist_ok=True)
            rows += run_one(key, settings)
            result = write(out, machine, args, keys, rows)  # after every section: a crash keeps what ran
    print(markdown(result))
    return result
