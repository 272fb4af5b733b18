"""P6: wall time of ``trident-<domain> --help`` and ``trident --help`` against ``python -c "import lightning"``."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import Arm, Row, Settings, interleave, make_row

COMMAND = "uv run python -m benchmarks --only P6"


def _runner(argv: list[str], cpu: dict[str, list[float]], name: str, rss: dict[str, float]):
    def run() -> None:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, argv)
        cpu.setdefault(name, []).append(usage.ru_utime + usage.ru_stime)
        rss[name] = max(rss.get(name, 0.0), usage.ru_maxrss / 1024)  # this child's own peak (KiB on Linux)

    return run


def run(settings: Settings) -> list[Row]:
    bindir = Path(sys.executable).parent
    cpu: dict[str, list[float]] = {}
    rss: dict[str, float] = {}
    arms = {"import lightning": _runner([sys.executable, "-c", "import lightning"], cpu, "import lightning", rss)}
    names = ["trident", "trident-nlp", "trident-vision", "trident-audio"]
    if settings.quick:
        names = ["trident-nlp"]
    for name in names:
        arms[f"{name} --help"] = _runner([str(bindir / name), "--help"], cpu, f"{name} --help", rss)
    reps = settings.pick(3, 5)
    timed = interleave(arms, reps=reps, warmup=1)
    cpu_median = {k: round(statistics.median(v), 3) for k, v in cpu.items()}
    rows = []
    what: dict[str, Any] = {"precision": "-", "batch": None, "threads": None, "data": "a fresh process each repetition"}
    base_arm = Arm('python -c "import lightning"', values=timed["import lightning"]["times"],
                   peak_rss_mb=rss["import lightning"], **what)
    for name in names:
        key = f"{name} --help"
        rows.append(make_row(
            "P6", f"`{name} --help` wall time", base_arm,
            Arm(f"`{key}`", values=timed[key]["times"], peak_rss_mb=rss[key], **what), "s", COMMAND,
            target=("<=", 2.0), target_on="trident", target_text="Trident <= 2 s",
            notes=f"{reps} interleaved reps after 1 warm-up, median wall time; CPU time (user+sys) {cpu_median[key]} s "
            f"vs {cpu_median['import lightning']} s for the baseline; peak RSS of each child process (wait4)",
            extra={"cpu_s": cpu_median[key], "baseline_cpu_s": cpu_median["import lightning"]},
        ))
    return rows
