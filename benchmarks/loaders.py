"""Data-loading sweep: ``num_workers`` x ``persistent_workers`` for each domain's training loader.

Iterates the training DataLoader of each domain's DataModule (default data, default recipe settings) for two
epochs per setting, interleaved across settings, median of the repetitions. Loading only: in training, workers
also compete with the model for the 2 cores, so a loader-only win is an upper bound.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import Row, Settings, interleave, make_row, timed_arm

COMMAND = "uv run python -m benchmarks --only LOAD"
SETTINGS = [(0, False), (1, False), (1, True), (2, False), (2, True)]


def _datamodules(settings: Settings) -> dict[str, Any]:
    from trident_audio.data import SpeechDataModule
    from trident_nlp.data import IntentDataModule
    from trident_vision.data import SegmentationDataModule

    root = settings.workdir / "LOAD"
    quick = settings.quick
    return {
        "nlp": lambda w, p: IntentDataModule(data_dir=str(root / "nlp"), backbone="scratch" if quick else "auto",
                                             num_workers=w, persistent_workers=p),
        "vision": lambda w, p: SegmentationDataModule(data_dir=str(root / "vision"), num_workers=w,
                                                      persistent_workers=p,
                                                      **({"roi_size": (32, 32, 32), "spacing": (2.0, 2.0, 2.0),
                                                          "cache": "none"} if quick else {})),
        "audio": lambda w, p: SpeechDataModule(data_dir=str(root / "audio"), num_workers=w, persistent_workers=p,
                                               **({"corpus_sentences": 40} if quick else {})),
    }


def _epochs(loader: Any, epochs: int, limit: int | None) -> None:
    for epoch in range(epochs):
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        batch_sampler = getattr(loader, "batch_sampler", None)
        if hasattr(batch_sampler, "set_epoch"):
            batch_sampler.set_epoch(epoch)
        for i, _ in enumerate(loader):
            if limit is not None and i + 1 >= limit:
                break


def run(settings: Settings) -> list[Row]:
    rows = []
    grid = SETTINGS[:2] if settings.quick else [(0, False), (2, False), (2, True)]
    limit = 2 if settings.quick else None
    for domain, make in _datamodules(settings).items():
        arms = {}
        loaders = {}
        setup = {}
        for workers, persistent in grid:
            start = time.perf_counter()
            dm = make(workers, persistent)
            dm.prepare_data()
            dm.setup("fit")
            setup[(workers, persistent)] = time.perf_counter() - start
            loader = dm.train_dataloader()
            loaders[(workers, persistent)] = loader
            arms[f"num_workers={workers}, persistent={persistent}"] = (
                lambda loader=loader: _epochs(loader, 2, limit))
        reps = 3
        timed = interleave(arms, reps=reps, warmup=0)
        default = "num_workers=0, persistent=False"
        best = min(timed, key=lambda k: timed[k]["median"])
        what: dict[str, Any]
        what = {"precision": "-", "threads": settings.threads, "data": f"{domain} default training data, 2 epochs"}
        for name in timed:
            rows.append(make_row(
                "LOAD", f"{domain} train loader, 2 epochs, {name}",
                timed_arm(timed, default, f"default ({default})", **what), timed_arm(timed, name, name, **what), "s",
                COMMAND, target=("<=", 1.0) if name != default else None,
                target_text="default is fastest (ratio <= 1)" if name != default else None,
                notes=("fastest setting; " if name == best else "") + f"{reps} interleaved reps, no warm-up (the "
                "first epoch's worker start is part of what is compared); loading only, no model",
            ))
        for loader in loaders.values():
            iterator = getattr(loader, "_iterator", None)
            if iterator is not None and hasattr(iterator, "_shutdown_workers"):
                iterator._shutdown_workers()
    return rows
