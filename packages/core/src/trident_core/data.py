"""DataModule helpers shared by every domain: loader settings, seeded splits, build-once datasets, bucketing."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Iterator, Sequence, Sized
from pathlib import Path
from typing import Any, TypeVar

import torch
from filelock import FileLock
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler

from trident_core.errors import ConfigError

T = TypeVar("T")
_MARKER = ".trident-complete"


class TridentDataModule(LightningDataModule):
    """Base DataModule: one place for loader settings and for building an embedded default dataset.

    Subclasses implement ``setup`` and the ``*_dataloader`` methods with :meth:`loader`, and override
    :meth:`uses_default_data` / :meth:`build_default_data` when they ship a default dataset.

    Args:
        batch_size: Samples per batch (per device).
        num_workers: DataLoader worker processes; 0 loads in the main process.
        persistent_workers: Keep workers alive between epochs (only used when ``num_workers > 0``).
        pin_memory: Pin host memory; ``None`` pins exactly when CUDA is available.
        seed: Seed of splits and of the shuffling generator.
    """

    def __init__(
        self,
        batch_size: int = 32,
        num_workers: int = 0,
        persistent_workers: bool = True,
        pin_memory: bool | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not _is_int(batch_size) or batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1 (an integer), got {batch_size!r}")
        if not _is_int(num_workers) or num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0 (an integer), got {num_workers!r}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.persistent_workers = persistent_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.seed = seed

    def uses_default_data(self) -> bool:
        """True when no user files are configured and the embedded default dataset is used."""
        return False

    def build_default_data(self) -> None:
        """Write the embedded default dataset (idempotently, e.g. through :func:`build_once`)."""
        raise NotImplementedError(f"{type(self).__name__} has no embedded default dataset")

    def prepare_data(self) -> None:
        """Build the embedded default dataset once; Lightning calls this on one process per node only."""
        if self.uses_default_data():
            self.build_default_data()

    def loader(
        self,
        dataset: Dataset[Any],
        *,
        shuffle: bool = False,
        batch_size: int | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        sampler: Sampler[int] | None = None,
        drop_last: bool = False,
        batch_sampler: Sampler[list[int]] | None = None,
    ) -> DataLoader[Any]:
        """A DataLoader with this module's loader settings.

        ``shuffle=True`` (without a ``sampler``) shuffles with an :class:`EpochShuffleSampler`: the order of
        epoch ``e`` depends only on ``seed`` and ``e``, so a run resumed from an epoch-end checkpoint sees the
        same batches as one that was never interrupted. A ``batch_sampler`` yields whole batches of indices
        (variable sizes allowed); it decides order and size alone, so it excludes ``shuffle``, ``batch_size``,
        ``sampler`` and ``drop_last``.
        """
        batching: dict[str, Any] = {"batch_size": batch_size or self.batch_size, "drop_last": drop_last}
        if batch_sampler is not None:
            given = [k for k, v in (("shuffle", shuffle), ("batch_size", batch_size), ("sampler", sampler),
                                    ("drop_last", drop_last)) if v is not None and v is not False]
            if given:
                raise ValueError(f"loader(batch_sampler=...) decides the batches itself; drop {', '.join(given)}")
            batching = {"batch_sampler": batch_sampler}
        elif shuffle and sampler is None:
            # no `shuffle` kwarg: Lightning then reads the RandomSampler subclass as shuffled and, under DDP,
            # swaps in a shuffling DistributedSampler (which is epoch-seeded too)
            batching["sampler"] = EpochShuffleSampler(dataset, seed=self.seed)  # type: ignore[arg-type]
        else:
            batching.update(sampler=sampler, shuffle=False)
        workers = self.num_workers
        return DataLoader(
            dataset,
            **batching,
            collate_fn=collate_fn,
            num_workers=workers,
            persistent_workers=self.persistent_workers and workers > 0,
            pin_memory=self.pin_memory,
        )


class EpochShuffleSampler(RandomSampler):
    """A random order per epoch that depends only on ``seed + epoch``: reproducible after a kill and resume.

    A ``RandomSampler`` with a generator continues that generator's stream from epoch to epoch; a resumed
    process starts a fresh stream and so would train on other batches than the run it replaces. Lightning
    calls :meth:`set_epoch` before every epoch; iterating again without it moves on to the next epoch's order.

    Args:
        data_source: The dataset (only its length is used).
        seed: Base seed.
    """

    def __init__(self, data_source: Sized, seed: int = 0) -> None:
        super().__init__(data_source)  # type: ignore[arg-type]
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use the order of ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


def _is_int(value: object) -> bool:
    """An integer that is not a bool (Python code can pass ``True`` or ``2.0`` where the CLI's typed parser cannot)."""
    return isinstance(value, int) and not isinstance(value, bool)


def seeded_split(items: Sequence[T], fractions: Sequence[float], seed: int) -> list[list[T]]:
    """Split ``items`` into parts of the given fractions, the same for the same seed on every machine.

    The last part takes the remainder, so no item is lost.

    Raises:
        ConfigError: if a fraction is negative or not a number, or they add up to more than 1.
    """
    numbers = all(isinstance(f, int | float) and not isinstance(f, bool) for f in fractions)
    if not numbers or any(not f >= 0 for f in fractions) or sum(fractions) > 1 + 1e-9:  # `not >=` catches NaN
        raise ConfigError(f"split fractions must be >= 0 and add up to at most 1, got {list(fractions)}")
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    parts: list[list[T]] = []
    start = 0
    for i, fraction in enumerate(fractions):
        end = len(items) if i == len(fractions) - 1 else start + round(fraction * len(items))
        parts.append([items[j] for j in order[start:end]])
        start = end
    return parts


def build_once(target_dir: str | Path, builder: Callable[[Path], None], *, version: str = "1") -> Path:
    """Build a dataset folder exactly once, atomically, even when several processes race for it.

    ``builder`` writes into a temporary sibling folder that is renamed to ``target_dir`` only when it
    finished, so an interrupted build never leaves a half-written dataset behind. A marker file records
    ``version``; a folder built by another version is rebuilt.
    """
    target = Path(target_dir)
    marker = target / _MARKER
    if marker.exists() and marker.read_text().strip() == version:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    with FileLock(lock_path):  # fcntl on POSIX, msvcrt on Windows
        if marker.exists() and marker.read_text().strip() == version:
            return target
        tmp = target.parent / f".{target.name}.building-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            builder(tmp)
            (tmp / _MARKER).write_text(version)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


class BucketSampler(DistributedSampler):  # type: ignore[type-arg]
    """Orders samples so that each batch holds samples of similar length (for dynamic padding).

    Samples are shuffled, cut into buckets of ``batch_size * bucket_factor``, sorted by length inside a
    bucket, grouped into batches, and the full batches are shuffled (a short last batch stays last, so the
    ``DataLoader``'s batches line up with the sampler's). Use it with ``DataLoader(batch_size=...)``.

    Under DDP it shards itself: it groups ``batch_size * world_size`` indices per global batch and rank ``r``
    takes every ``world_size``-th index of each from the ``r``-th, so every rank's batch holds similar lengths,
    the ranks see disjoint shards, and together they train on the batches one process with
    ``batch_size * world_size`` would see (the DDP equivalence test relies on it). It is a ``DistributedSampler``
    only so that Lightning leaves it alone: Lightning's ``DistributedSamplerWrapper`` shuffles a training
    sampler's indices again, which undoes the buckets. The order is padded (with its first indices) to a
    multiple of the world size, as ``DistributedSampler`` does, so that every rank runs the same number of steps.

    Args:
        lengths: Length of every sample (tokens, frames).
        batch_size: Per-device batch size.
        shuffle: Shuffle buckets and batches (each epoch differently, the same on every rank).
        seed: Base seed.
        bucket_factor: Batches per bucket; larger sorts more globally.
    """

    # no DistributedSampler.__init__: the world is read at iteration, so the sampler also works undistributed
    def __init__(
        self, lengths: Sequence[int], batch_size: int, shuffle: bool = True, seed: int = 0, bucket_factor: int = 50
    ) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_factor = bucket_factor
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use the order of ``epoch``."""
        self.epoch = epoch

    @staticmethod
    def _world() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    def __len__(self) -> int:
        world, _ = self._world()
        return math.ceil(len(self.lengths) / world)

    def __iter__(self) -> Iterator[int]:
        world, rank = self._world()
        group = self.batch_size * world
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        n = len(self.lengths)
        order = torch.randperm(n, generator=g).tolist() if self.shuffle else list(range(n))
        chunk = group * max(1, self.bucket_factor)
        batches: list[list[int]] = []
        for start in range(0, n, chunk):
            bucket = sorted(order[start : start + chunk], key=self.lengths.__getitem__)
            batches.extend(bucket[i : i + group] for i in range(0, len(bucket), group))
        if self.shuffle:
            full = len(batches) - (1 if batches and len(batches[-1]) < group else 0)
            batches = [batches[i] for i in torch.randperm(full, generator=g).tolist()] + batches[full:]
            # advance so a sampler that is iterated again without set_epoch gets a new order
            self.epoch += 1
        pad = -n % world
        if pad:
            batches[-1] = batches[-1] + [order[i % n] for i in range(pad)]
        for batch in batches:
            yield from batch[rank::world]

    @property
    def num_batches(self) -> int:
        """Batches per epoch on one device."""
        return math.ceil(len(self.lengths) / self.batch_size)
