"""Peak resident memory of ``trident-vision fit`` with ``data.cache`` memory, disk and none, on large CT-like volumes.

Writes ``--cases`` synthetic CT volumes (int16 Hounsfield units, uncompressed ``.nii``, 0.8 x 0.8 x 2.5 mm voxels:
air, a body, a liver-like organ and a lesion; one foreground class) with a Decathlon ``dataset.json`` (modality
CT), then runs ``fit`` once per arm, each arm in its own process, and reads that process's peak RSS from
``os.wait4`` (``ru_maxrss``). Every arm preprocesses at the default 1.5 mm (a 512 x 512 x 200 input becomes about
273 x 273 x 333 voxels before the foreground crop) and trains the tiny ``debug`` UNet on 32^3 patches for
``--epochs`` full epochs over the training cases, without validation steps (``memory`` still fills the
validation cache at setup, as it does in a real run). The generated data and caches are deleted at the end
unless ``--keep``.

    uv run python benchmarks/vision_cache_rss.py --work /tmp/ct --cases 20 --shape 512 512 200
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SPACING = (0.8, 0.8, 2.5)


def make_ct(seed: int, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One CT-like volume ``(int16 HU, uint8 label, affine)``: air, an elliptic body, an organ and a lesion."""
    rng = np.random.default_rng(seed)
    x, y, z = (np.linspace(-1, 1, n, dtype=np.float32) for n in shape)
    xx, yy = x[:, None, None], y[None, :, None]
    body = (xx / rng.uniform(0.8, 0.9)) ** 2 + (yy / rng.uniform(0.6, 0.7)) ** 2 <= 1.0
    body = np.broadcast_to(body, shape)
    centre = rng.uniform(-0.2, 0.2, size=3).astype(np.float32)
    organ = ((xx - centre[0]) / 0.35) ** 2 + ((yy - centre[1]) / 0.3) ** 2 + ((z - centre[2]) / 0.5) ** 2 <= 1.0
    lesion = ((xx - centre[0]) / 0.08) ** 2 + ((yy - centre[1]) / 0.08) ** 2 + ((z - centre[2]) / 0.15) ** 2 <= 1.0
    image = np.full(shape, -1000, dtype=np.int16)
    image[body] = 30
    image[organ] = 60
    image[lesion] = 95
    image += rng.normal(0, 12, size=shape).astype(np.int16)
    label = (organ & body).astype(np.uint8)
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = rng.uniform(-20, 20, size=3)
    return image, label, affine


def write_dataset(root: Path, cases: int, shape: tuple[int, int, int]) -> Path:
    import nibabel as nib

    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(cases):
        image, label, affine = make_ct(i, shape)
        name = f"ct_{i:03d}.nii"
        nib.save(nib.Nifti1Image(image, affine), str(root / "imagesTr" / name))
        nib.save(nib.Nifti1Image(label, affine), str(root / "labelsTr" / name))
        entries.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    n_val = max(1, cases // 5)  # --cases >= 2
    datalist = {"name": "CTLike", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "organ"},
                "training": entries[:-n_val], "validation": entries[-n_val:]}
    (root / "dataset.json").write_text(json.dumps(datalist, indent=2))
    return root / "dataset.json"


def run_arm(cache: str, datalist: Path, work: Path, epochs: int) -> dict[str, float | str]:
    """``fit`` with ``data.cache=cache`` in a child process: its peak RSS (MiB), wall time, disk cache size."""
    cache_dir = work / f"cache-{cache}"
    command = [sys.executable, "-m", "trident_vision", "fit", "--config", "debug", "--data.datalist", str(datalist),
               "--data.cache", cache, "--data.cache_dir", str(cache_dir), "--data.batch_size", "2",
               "--trainer.max_epochs", str(epochs), "--trainer.limit_train_batches", "1.0",
               "--trainer.limit_val_batches", "0", "--trainer.default_root_dir", str(work / f"run-{cache}"),
               "--trainer.logger", "false"]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    err = child.stderr.read() if child.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"arm {cache} failed:\n{err[-3000:]}")
    disk = sum(f.stat().st_size for f in cache_dir.rglob("*") if f.is_file()) if cache_dir.exists() else 0
    return {"cache": cache, "peak_rss_mib": round(usage.ru_maxrss / 1024), "wall_s": round(wall, 1),
            "cache_on_disk_mib": round(disk / 2**20)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (data, caches, runs)")
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 200))
    parser.add_argument("--arms", default="memory,disk,none")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the generated data and caches")
    args = parser.parse_args(argv)
    if args.cases < 2:
        parser.error("--cases must be >= 2 (a fifth, at least one, is the validation split)")
    datalist = args.work / "data" / "dataset.json"
    start = time.perf_counter()
    if not datalist.exists():
        write_dataset(datalist.parent, args.cases, tuple(args.shape))
    print(json.dumps({"cases": args.cases, "shape": list(args.shape), "spacing_mm": SPACING,
                      "generate_s": round(time.perf_counter() - start, 1)}), flush=True)
    try:
        for arm in args.arms.split(","):
            print(json.dumps(run_arm(arm, datalist, args.work, args.epochs)), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
