"""P6: wall time of ``trident-<domain> --help`` and ``trident --help`` against ``python -c "import lightning"``."""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.common import Row, Settings, interleave

COMMAND = "uv run python -m benchmarks --only P6"


def _runner(argv: list[str], cpu: dict[str, list[float]], name: str):
    def run() -> None:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.setdefault(name, []).append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)

    return run


def run(settings: Settings) -> list[Row]:
    bindir = Path(sys.executable).parent
    cpu: dict[str, list[float]] = {}
    arms = {"import lightning": _runner([sys.executable, "-c", "import lightning"], cpu, "import lightning")}
    names = ["trident", "trident-nlp", "trident-vision", "trident-audio"]
    if settings.quick:
        names = ["trident-nlp"]
    for name in names:
        arms[f"{name} --help"] = _runner([str(bindir / name), "--help"], cpu, f"{name} --help")
    timed = interleave(arms, reps=settings.pick(1, 3), warmup=1)
    base = timed["import lightning"]["median"]
    cpu_median = {k: round(statistics.median(v), 3) for k, v in cpu.items()}
    rows = []
    for name in names:
        t = timed[f"{name} --help"]["median"]
        rows.append(
            Row(
                id="P6", compare=f"`{name} --help` wall time", baseline_name='python -c "import lightning"',
                baseline=round(base, 3), trident=round(t, 3), unit="s", ratio=round(base / t, 3),
                ratio_def="baseline / trident (higher is faster)", target="<= 2 s", met=t <= 2.0, command=COMMAND,
                notes=f"fresh subprocess each time, interleaved, median wall time; CPU time (user+sys) "
                f"{cpu_median[name + ' --help']} s vs {cpu_median['import lightning']} s for the baseline",
                extra={"cpu_s": cpu_median[name + " --help"], "baseline_cpu_s": cpu_median["import lightning"],
                       "times_s": timed[f"{name} --help"]["times"],
                       "baseline_times_s": timed["import lightning"]["times"]},
            )
        )
    return rows
