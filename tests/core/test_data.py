"""DataModule helpers: seeded splits, build-once datasets, length bucketing (also under DDP sharding)."""

from __future__ import annotations

import math
import multiprocessing as mp
from pathlib import Path

import pytest
import torch
from torch.utils.data import DistributedSampler

from trident_core.data import BucketSampler, TridentDataModule, build_once, seeded_split
from trident_core.errors import ConfigError


def test_seeded_split_is_deterministic_and_complete() -> None:
    items = list(range(103))
    a = seeded_split(items, [0.8, 0.1, 0.1], seed=7)
    assert a == seeded_split(items, [0.8, 0.1, 0.1], seed=7)
    assert a != seeded_split(items, [0.8, 0.1, 0.1], seed=8)
    assert [len(p) for p in a] == [82, 10, 11]
    assert sorted(sum(a, [])) == items
    with pytest.raises(ConfigError, match="add up to at most 1"):
        seeded_split(items, [0.9, 0.2], seed=0)


def _count_build(folder: Path) -> None:
    counter = folder.parent / "builds.txt"
    with open(counter, "a") as f:
        f.write("x")
    (folder / "data.txt").write_text("ok")


def _race(target: str) -> None:
    build_once(target, _count_build)


@pytest.mark.slow  # > 20 s on 2 cores: the slow pass (issue 17: default pass < 15 min)
def test_build_once_is_idempotent_across_processes(tmp_path: Path) -> None:
    target = tmp_path / "ds"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_race, args=(str(target),)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    build_once(target, _count_build)
    assert (tmp_path / "builds.txt").read_text() == "x"
    assert (target / "data.txt").read_text() == "ok"


def test_interrupted_build_leaves_nothing_half_written(tmp_path: Path) -> None:
    def broken(folder: Path) -> None:
        (folder / "part.txt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        build_once(tmp_path / "ds", broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ds.lock"]
    build_once(tmp_path / "ds", _count_build)
    assert (tmp_path / "ds" / "data.txt").is_file()


def test_bucket_sampler_batches_hold_similar_lengths() -> None:
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 500, (2000,), generator=g).tolist()
    sampler = BucketSampler(lengths, batch_size=16, seed=0, bucket_factor=20)
    order = list(sampler)
    assert sorted(order) == list(range(2000))
    batches = [order[i : i + 16] for i in range(0, 2000, 16)]
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    random_order = torch.randperm(2000, generator=g).tolist()
    random_batches = [random_order[i : i + 16] for i in range(0, 2000, 16)]
    random_spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in random_batches) / 125
    assert spread < random_spread / 10
    # padding work: tokens in padded batches versus real tokens
    padded = sum(16 * max(lengths[i] for i in b) for b in batches)
    assert padded / sum(lengths) < 1.1
    sampler.set_epoch(1)
    assert list(sampler) != order  # a new order each epoch


@pytest.mark.parametrize("n", [640, 637])
def test_bucket_sampler_shards_itself_into_the_single_process_batches(monkeypatch: pytest.MonkeyPatch,
                                                                      n: int) -> None:
    """Under DDP rank r's batch k is every second index of the batch k that one process with twice the batch size
    draws (the DDP equivalence test relies on it); the shards are disjoint, hold similar lengths and have the same
    number of steps, also when the data does not divide evenly. Being a DistributedSampler keeps Lightning from
    wrapping it (its wrapper reshuffles a training sampler's indices, which mixed the buckets: the control)."""
    lengths = [(i * 37) % 300 + 1 for i in range(n)]
    assert isinstance(BucketSampler(lengths, batch_size=8), DistributedSampler)
    single = BucketSampler(lengths, batch_size=16, seed=3)
    single.set_epoch(1)
    order = list(single)
    one = [order[i : i + 16] for i in range(0, n, 16)]
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    shards = []
    for rank in range(2):
        monkeypatch.setattr(torch.distributed, "get_rank", lambda rank=rank: rank)
        sampler = BucketSampler(lengths, batch_size=8, seed=3)
        sampler.set_epoch(1)
        shard = list(sampler)
        assert len(shard) == len(sampler) == math.ceil(n / 2)
        shards.append([shard[i : i + 8] for i in range(0, len(shard), 8)])
    assert len(shards[0]) == len(shards[1]) == len(one)
    for k in range(len(one) - 1):
        assert sorted(shards[0][k] + shards[1][k]) == sorted(one[k])
        assert not set(shards[0][k]) & set(shards[1][k])
    last = shards[0][-1] + shards[1][-1]  # padded (with an index drawn earlier) to a multiple of the world
    assert set(one[-1]) <= set(last) and len(last) == len(one[-1]) + n % 2
    for shard in shards:
        spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in shard) / len(shard)
        assert spread < 30


def test_loader_settings() -> None:
    dm = TridentDataModule(batch_size=4, num_workers=0)
    loader = dm.loader(list(range(10)), shuffle=True)
    assert loader.batch_size == 4 and not loader.persistent_workers and loader.pin_memory is False
    assert sorted(sum((b.tolist() for b in loader), [])) == list(range(10))
    with pytest.raises(ConfigError, match="data.batch_size must be >= 1"):
        TridentDataModule(batch_size=0)


def test_loader_takes_a_batch_sampler_of_variable_batches() -> None:
    dm = TridentDataModule(batch_size=4, num_workers=0)
    batches = [[0, 1, 2], [3], [4, 5, 6, 7, 8], [9]]
    loader = dm.loader(list(range(10)), batch_sampler=batches)  # type: ignore[arg-type]
    assert loader.batch_size is None and len(loader) == 4
    assert [b.tolist() for b in loader] == batches
    with pytest.raises(ValueError, match="decides the batches itself; drop shuffle, batch_size"):
        dm.loader(list(range(10)), batch_sampler=batches, shuffle=True, batch_size=2)  # type: ignore[arg-type]
