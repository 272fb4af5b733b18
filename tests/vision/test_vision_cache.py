"""``data.cache``: the disk cache writes each preprocessed volume once, reads it back with the memory cache's
voxels and patches, and is never reused stale; a bad value names the key."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from vision_fixtures import write_nifti

from trident_core.errors import ConfigError
from trident_vision.defaults import make_phantom


def _data(datalist: Path, cache: str, cache_dir: Path | None = None, spacing: float = 4.0) -> Any:
    from trident_vision.data import SegmentationDataModule

    data = SegmentationDataModule(datalist=str(datalist), roi_size=(16, 16, 16), spacing=(spacing,) * 3,
                                  cache=cache, cache_dir=str(cache_dir) if cache_dir else None, thread_loader=False,
                                  cache_num_workers=0, check_inputs=False)
    data.setup("fit")
    return data


def _epoch(data: Any, epoch: int) -> list[dict[str, Any]]:
    loader = data.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return [{k: batch[k].as_tensor().clone() for k in ("image", "label")} for batch in loader]


def _filled(cache: Path) -> set[Path]:
    """The key folders holding cached volumes."""
    return {f.parent for f in cache.rglob("*.pt")}


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The images ``LoadImaged`` reads (a spy: the real transform still runs)."""
    from monai.transforms import LoadImaged

    seen: list[str] = []
    real = LoadImaged.__call__

    def spy(self: Any, data: Any, reader: Any = None) -> Any:
        seen.append(str(data["image"]))
        return real(self, data, reader)

    monkeypatch.setattr(LoadImaged, "__call__", spy)
    return seen


def test_disk_cache_writes_once_then_reads_what_memory_caches(phantoms: Path, tmp_path: Path,
                                                              loads: list[str]) -> None:
    datalist = phantoms / "dataset.json"
    disk = _data(datalist, "disk", tmp_path / "cache")
    n_train, n_val = len(disk.datasets["train"]), len(disk.datasets["val"])
    assert loads == []  # PersistentDataset preprocesses lazily, at first access
    disk_epochs = [_epoch(disk, 0)]
    disk_val = [disk.datasets["val"][i] for i in range(n_val)]
    assert len(loads) == n_train + n_val
    files = sorted((tmp_path / "cache").rglob("*.pt"))
    assert len(files) == n_train + n_val
    stamps = [f.stat().st_mtime_ns for f in files]
    disk_epochs.append(_epoch(disk, 1))
    disk_val += [disk.datasets["val"][i] for i in range(n_val)]
    assert len(loads) == n_train + n_val  # the second epoch read the cache files, not the NIfTI files
    assert [f.stat().st_mtime_ns for f in sorted((tmp_path / "cache").rglob("*.pt"))] == stamps

    loads.clear()
    memory = _data(datalist, "memory")
    assert len(loads) == n_train + n_val  # CacheDataset fills at setup
    for epoch, disk_batches in enumerate(disk_epochs):
        memory_batches = _epoch(memory, epoch)
        assert len(memory_batches) == len(disk_batches) > 0
        for m, d in zip(memory_batches, disk_batches, strict=True):
            assert torch.equal(m["image"], d["image"]) and torch.equal(m["label"], d["label"])
    for i, item in enumerate(disk_val):
        expected = memory.datasets["val"][i % n_val]
        assert torch.equal(torch.as_tensor(item["image"]), expected["image"].as_tensor())
        assert torch.equal(torch.as_tensor(item["label"]), expected["label"].as_tensor())
    assert len(loads) == n_train + n_val


def test_disk_cache_is_not_reused_stale(phantoms: Path, tmp_path: Path, loads: list[str]) -> None:
    root = tmp_path / "data"
    shutil.copytree(phantoms, root)
    datalist, cache = root / "dataset.json", tmp_path / "cache"
    val_image = _data(datalist, "disk", cache).datasets["val"][0]["image"]
    assert len(_filled(cache)) == 1

    coarser = _data(datalist, "disk", cache, spacing=6.0).datasets["val"][0]["image"]  # another preprocessing
    assert len(_filled(cache)) == 2
    assert coarser.shape != val_image.shape

    entry = _data(datalist, "none").splits()["val"][0]
    image, label, affine = make_phantom(77)  # the same paths, other volumes
    write_nifti(root / entry["image"], image, affine)
    write_nifti(root / entry["label"], label, affine)
    loads.clear()
    edited = _data(datalist, "disk", cache).datasets["val"][0]["image"]
    assert len(loads) == 1  # preprocessed again, not read from the cache
    fresh = _data(datalist, "memory").datasets["val"][0]["image"]
    assert torch.equal(torch.as_tensor(edited), fresh.as_tensor())
    assert edited.shape != val_image.shape or not torch.equal(torch.as_tensor(edited), torch.as_tensor(val_image))


def test_disk_cache_defaults_to_the_run_folder(phantoms: Path, tmp_path: Path) -> None:
    from lightning.pytorch import Trainer

    from trident_vision.data import SegmentationDataModule

    data = SegmentationDataModule(datalist=str(phantoms / "dataset.json"), cache="disk", check_inputs=False)
    assert data.disk_cache_dir() == Path(data.data_dir) / ".cache"  # no trainer: under data.data_dir
    data.trainer = Trainer(default_root_dir=str(tmp_path / "run"), logger=False, enable_checkpointing=False)
    assert data.disk_cache_dir() == tmp_path / "run" / "data_cache"


def test_a_bad_cache_value_names_the_key(phantoms: Path) -> None:
    from trident_vision.data import SegmentationDataModule

    with pytest.raises(ConfigError, match=r"data.cache must be one of \('memory', 'disk', 'none'\).*got 'ram'"):
        SegmentationDataModule(datalist=str(phantoms / "dataset.json"), cache="ram")


def test_a_bad_cache_value_exits_2_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trident_vision.cli import main

    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", "debug", "--data.cache", "ram", "--data.data_dir", str(tmp_path / "d"),
              "--trainer.default_root_dir", str(tmp_path / "r"), "--trainer.logger", "false"])
    assert info.value.code == 2
    assert "data.cache must be one of" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*.ckpt"))
