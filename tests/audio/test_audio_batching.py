"""Batches by duration (`--data.batch_duration`): the budget holds, every utterance once, the same count per rank."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

from trident_audio.data import DurationBatchSampler, SpeechDataModule
from trident_core.data import BucketSampler
from trident_core.errors import ConfigError


@pytest.fixture
def durations() -> list[float]:
    import random

    rng = random.Random(0)
    return [round(rng.uniform(0.2, 8.0), 3) for _ in range(201)]


def test_batches_hold_at_most_the_budget_and_every_utterance_once(durations: list[float]) -> None:
    sampler = DurationBatchSampler(durations, 20.0, seed=1)
    batches = list(sampler)
    for batch in batches:
        assert len(batch) * max(durations[i] for i in batch) <= 20.0  # padded seconds
        assert sum(durations[i] for i in batch) <= 20.0
    assert sorted(i for b in batches for i in b) == list(range(len(durations)))
    assert min(len(b) for b in batches) >= 2  # no batch of one (BatchNorm; under DDP a skip on one rank hangs)
    packed = sorted(sampler.batches, key=lambda b: durations[b[0]])
    for small, large in pairwise(packed):  # greedy: the next utterance did not fit
        assert (len(small) + 1) * durations[large[0]] > 20.0
    fixed = list(BucketSampler([int(d * 1000) for d in durations], 16, seed=1))
    groups = [fixed[i : i + 16] for i in range(0, len(fixed), 16)]  # control: 16 utterances per batch overflow
    assert max(sum(durations[i] for i in g) for g in groups) > 20.0


def test_order_depends_on_seed_and_epoch_only(durations: list[float]) -> None:
    a, b = DurationBatchSampler(durations, 20.0, seed=1), DurationBatchSampler(durations, 20.0, seed=1)
    epoch0, epoch1 = list(a), list(a)  # iterating again moves to the next epoch
    b.set_epoch(1)
    assert list(b) == epoch1 != epoch0
    assert sorted(map(sorted, epoch0)) == sorted(map(sorted, epoch1))  # the same batches, in another order
    assert len(a) == len(epoch0) == len(epoch1)


@pytest.mark.parametrize("world", [3, 5])  # 52 batches: neither splits evenly
def test_every_rank_gets_the_same_number_of_batches(durations: list[float], world: int) -> None:
    sampler = DurationBatchSampler(durations, 20.0, seed=1)
    assert len(sampler) % world  # control: the batches do not split evenly by themselves
    ranks = []
    for rank in range(world):  # as Lightning wraps a training loader's sampler under DDP
        sampler.set_epoch(0)
        ranks.append(list(DistributedSamplerWrapper(sampler, num_replicas=world, rank=rank, shuffle=True)))
    counts = {len(r) for r in ranks}
    assert len(counts) == 1  # no rank waits for a batch another never runs
    seen = {i for r in ranks for b in r for i in b}
    assert seen == set(range(len(durations)))


def test_datamodule_trains_on_duration_batches(
    tmp_path: Path, write_wav: Callable[..., Path], write_manifest: Callable[..., Path]
) -> None:
    rows = []
    for i, seconds in enumerate([0.2, 0.3, 0.5, 0.8, 1.0, 1.2, 1.5]):
        write_wav(tmp_path / f"{i}.wav", seconds=seconds)
        rows.append({"audio_filepath": f"{i}.wav", "text": f"utterance {i}"})
    train = write_manifest(tmp_path / "train.jsonl", rows)
    dm = SpeechDataModule(train_manifest=str(train), val_manifest=str(train), max_duration=1.5, batch_duration=3.0,
                          batch_size=7)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert sorted(len(b["text"]) for b in batches) == [2, 2, 3]  # 3 x 0.5; 2 x 1.0 (0.8, 1.0); 2 x 1.5 (1.2, 1.5)
    for b in batches:
        assert b["waveform"].numel() <= 3.0 * 16000  # padded samples within the budget
    assert sum(len(b["text"]) for b in batches) == 7
    assert len(list(dm.val_dataloader())) == 1  # evaluation keeps batch_size
    with pytest.raises(ConfigError, match=r"data.batch_duration \(2.0s\) must be at least twice data.max_duration"):
        SpeechDataModule(max_duration=1.5, batch_duration=2.0)


@pytest.mark.slow  # > 20 s on 2 cores: the slow pass (issue 17: default pass < 15 min)
def test_fit_with_batch_duration_through_the_cli(tmp_path: Path) -> None:
    from trident_audio.cli import DOMAIN
    from trident_core.cli import run_domain

    cli = run_domain(DOMAIN, ["fit", "--config", "debug", "--trainer.default_root_dir", str(tmp_path / "run"),
                              "--data.data_dir", str(tmp_path / "data"), "--data.batch_duration", "48"])
    assert cli is not None and cli.trainer.global_step == 2  # limit_train_batches: 2 duration batches trained
    loader = cli.datamodule.train_dataloader()
    assert isinstance(loader.sampler, DurationBatchSampler)
    for batch in loader:
        assert batch["waveform"].numel() <= 48 * 16000


@pytest.mark.slow  # > 20 s on 2 cores: the slow pass (issue 17: default pass < 15 min)
@pytest.mark.distributed
def test_ddp_with_batch_duration_runs_a_full_epoch_on_two_processes(tmp_path: Path) -> None:
    """Two CPU processes, a whole epoch of duration batches: a rank with one batch more than the other would hang
    in its gradient all-reduce (the subprocess timeout), and the replicas stay identical."""
    import json
    import os
    import subprocess
    import sys

    tests = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{tests}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "trident_audio", "fit", "--config", "debug", "--preset", "cpu_ddp2",
           "--trainer.default_root_dir", str(tmp_path / "run"), "--data.data_dir", str(tmp_path / "data"),
           "--data.batch_duration", "48", "--trainer.limit_train_batches", "1.0",
           "--trainer.callbacks+=ddp_probe.AudioFilesProbe"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    probes = [json.loads((tmp_path / "run" / f"probe-rank{r}.json").read_text()) for r in (0, 1)]
    assert probes[0]["weights"] == probes[1]["weights"]
    seen = {Path(p).name for p in probes[0]["seen"] + probes[1]["seen"]}
    written = {Path(json.loads(line)["audio_filepath"]).name
               for line in (tmp_path / "data" / "train.jsonl").read_text().splitlines() if line.strip()}
    assert written <= seen  # the whole epoch was trained, across the two ranks


def test_a_lone_longest_utterance_gets_a_partner() -> None:
    sampler = DurationBatchSampler([1.0, 1.0, 1.0, 5.0], 10.0)  # greedy packing alone leaves [5.0] by itself
    assert sorted(map(sorted, sampler.batches)) == [[0, 3], [1, 2]]
    with pytest.raises(ConfigError, match="fewer than two of the longest utterances"):
        DurationBatchSampler([1.0, 6.0], 10.0)
