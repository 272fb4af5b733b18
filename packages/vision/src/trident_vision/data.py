"""``SegmentationDataModule``: Decathlon datalists or folders of NIfTI pairs, MONAI transforms and caches.

Under DDP every rank caches only its own shard of each split (``monai.data.partition_dataset``, evenly
divisible so that all ranks run the same number of steps), and the loaders use a one-replica
``DistributedSampler`` so that Lightning does not split the shard a second time.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DistributedSampler

from trident_core.data import TridentDataModule, build_once, seeded_split
from trident_core.errors import ConfigError, DataError
from trident_vision.cache import cache_key, cached_dataset, check_cache
from trident_vision.datalist import Datalist, check_case, find_pairs, image_channels, read_datalist
from trident_vision.defaults import BRAIN_LABELS, BUILDERS, PHANTOM_LABELS
from trident_vision.transforms import eval_transforms, intensity_mode, make_preprocessing, train_transforms

DEFAULT_DATA_VERSION = "3"


class SegmentationDataModule(TridentDataModule):
    """3D segmentation data from a ``dataset.json`` datalist, a folder of pairs, or the embedded default.

    Args:
        data_dir: Folder of the embedded default dataset (built on first use when no files are given).
        datalist: Decathlon ``dataset.json``; paths inside resolve from its folder.
        image_dir: A plain folder of ``<case>_img.nii.gz`` / ``<case>_seg.nii.gz`` pairs (instead of a datalist).
        num_classes: Classes (with background) for ``image_dir``; read from the datalist otherwise.
        default_dataset: Embedded dataset: ``phantoms`` (synthetic) or ``mni152`` (brain tissue, needs nilearn).
        spacing: Target voxel size in mm.
        orientation: Target axis codes.
        intensity: ``window`` (CT: clip to ``intensity_window`` and scale to [0, 1]), ``zscore`` (MRI: per-channel
            z-score over non-zero voxels) or ``percentile``; ``None`` chooses from the datalist's ``modality``
            (all ``CT``: ``window``; anything else: ``zscore``; none: ``percentile``).
        intensity_window: ``[min, max]`` Hounsfield window for ``window`` (default ``[-175, 250]``); giving it
            without ``intensity`` chooses ``window``.
        percentiles: Lower/upper percentiles of ``percentile``.
        crop_foreground: Crop to the bounding box of the foreground after scaling (``image > 0``; ``zscore``:
            ``image != 0``), plus a margin.
        roi_size: Training patch size, also the sliding-window size of the model.
        num_samples: Patches sampled per volume per step.
        pos: Relative weight of patches centred on foreground.
        neg: Relative weight of patches centred on background.
        augment: Random flips, 90 degree rotations, intensity scale and shift.
        cache: ``memory`` (CacheDataset: every preprocessed volume in RAM), ``disk`` (PersistentDataset: each
            volume preprocessed once, written to ``cache_dir`` and read back, for data larger than RAM) or
            ``none`` (preprocess at every access). See :mod:`trident_vision.cache`.
        cache_dir: Folder of the disk cache (default ``<trainer.default_root_dir>/data_cache``, or
            ``<data_dir>/.cache`` without a trainer); subfolders are keyed by the preprocessing, so one folder
            serves several configs and a changed config or file is never read stale.
        cache_rate: Fraction of the volumes kept in the memory cache.
        cache_num_workers: Threads that fill the cache.
        thread_loader: With ``num_workers=0``, run the random transforms in a background thread
            (MONAI ``ThreadDataLoader``) so that they overlap with the training step.
        val_fraction: Share of training entries held out when the datalist has no ``validation``.
        check_inputs: Read every file once at setup and raise a clear error for bad ones.
        batch_size: Volumes per training step (each gives ``num_samples`` patches).
        num_workers: DataLoader workers.
        persistent_workers: Keep workers alive.
        pin_memory: Pin host memory (default: when CUDA is available).
        seed: Split and shuffle seed.
    """

    def __init__(
        self,
        data_dir: str = "data/vision",
        datalist: str | None = None,
        image_dir: str | None = None,
        num_classes: int | None = None,
        default_dataset: str = "phantoms",
        spacing: tuple[float, float, float] = (1.5, 1.5, 1.5),
        orientation: str = "RAS",
        intensity: str | None = None,
        intensity_window: tuple[float, float] | None = None,
        percentiles: tuple[float, float] = (0.5, 99.5),
        crop_foreground: bool = True,
        roi_size: tuple[int, int, int] = (48, 48, 48),
        num_samples: int = 2,
        pos: float = 1.0,
        neg: float = 1.0,
        augment: bool = True,
        cache: str = "memory",
        cache_dir: str | None = None,
        cache_rate: float = 1.0,
        cache_num_workers: int = 2,
        thread_loader: bool = True,
        val_fraction: float = 0.2,
        check_inputs: bool = True,
        batch_size: int = 2,
        num_workers: int = 0,
        persistent_workers: bool = True,
        pin_memory: bool | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, persistent_workers, pin_memory, seed)
        check_cache(cache)
        if default_dataset not in BUILDERS:
            raise ConfigError(f"data.default_dataset must be one of {sorted(BUILDERS)}, got {default_dataset!r}")
        if datalist and image_dir:
            raise ConfigError("give either data.datalist or data.image_dir, not both")
        if len(roi_size) != 3 or min(roi_size) < 1:
            raise ConfigError(f"data.roi_size must be three positive sizes, got {list(roi_size)}")
        if num_samples < 1:
            raise ConfigError(f"data.num_samples must be >= 1, got {num_samples}")
        self.data_dir = data_dir
        self.datalist = datalist
        self.image_dir = image_dir
        self.default_dataset = default_dataset
        self.roi_size = [int(r) for r in roi_size]
        self.num_samples, self.pos, self.neg, self.augment = num_samples, pos, neg, augment
        self.cache, self.cache_dir, self.cache_rate = cache, cache_dir, cache_rate
        self.cache_num_workers = cache_num_workers
        self.thread_loader = thread_loader
        self.val_fraction = val_fraction
        self.check_inputs = check_inputs
        self._datalist: Datalist | None = None
        self.datasets: dict[str, Any] = {}
        self.class_names, self.label_values, self.modality = self._describe(num_classes)
        self.preprocessing = make_preprocessing(spacing, orientation, intensity_window, percentiles, crop_foreground,
                                                intensity=intensity_mode(self.modality, intensity, intensity_window))
        # the datalist's `modality` says how many channels every image must have; else the first image does
        self.in_channels = len(self.modality) or (1 if self.uses_default_data() else
                                                  image_channels(self._read().training[0]["image"]))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _describe(self, num_classes: int | None) -> tuple[list[str], list[int], list[str]]:
        """Class names, label values and channel names, known at construction so the CLI can link them."""
        if self.uses_default_data():
            labels = PHANTOM_LABELS if self.default_dataset == "phantoms" else BRAIN_LABELS
            return [labels[str(i)] for i in range(len(labels))], list(range(len(labels))), []
        datalist = self._read()
        if self.image_dir and num_classes is not None:
            datalist.labels = ["background", *(f"class_{i}" for i in range(1, num_classes))]
        return datalist.labels, datalist.values, datalist.modality

    def _read(self) -> Datalist:
        if self._datalist is None:
            if self.datalist:
                self._datalist = read_datalist(self.datalist)
            elif self.image_dir:
                self._datalist = self._from_folder(Path(self.image_dir))
            else:
                self._datalist = read_datalist(Path(self.data_dir) / "dataset.json")
        return self._datalist

    def _from_folder(self, folder: Path) -> Datalist:
        import nibabel as nib
        import numpy as np

        pairs = find_pairs(folder)
        top = 0
        for pair in pairs:  # class count from the largest label value present
            try:
                top = max(top, int(np.asarray(nib.load(pair["label"]).dataobj).max()))
            except Exception as err:
                raise DataError(f"cannot read label ({type(err).__name__}: {err})", path=pair["label"]) from None
        names = ["background", *(f"class_{i}" for i in range(1, max(top, 1) + 1))]
        return Datalist(path=folder, labels=names, training=pairs)

    def uses_default_data(self) -> bool:
        return not self.datalist and not self.image_dir

    def build_default_data(self) -> None:
        build_once(self.data_dir, BUILDERS[self.default_dataset], version=f"{self.default_dataset}-"
                   f"{DEFAULT_DATA_VERSION}")

    def splits(self) -> dict[str, list[dict[str, str]]]:
        """Entries per stage: ``train``, ``val``, ``test`` (labelled) and ``predict`` (images)."""
        dl = self._read()
        train, val = dl.training, dl.validation
        if not val:
            if len(train) < 2:
                raise DataError("need at least two training entries to hold out a validation case",
                                path=dl.path, key="training")
            n_val = max(1, round(self.val_fraction * len(train)))
            val, train = seeded_split(train, [n_val / len(train), 1 - n_val / len(train)], self.seed)
        labelled_test = [e for e in dl.test if "label" in e]
        return {"train": train, "val": val, "test": labelled_test or val,
                "predict": [{"image": e["image"]} for e in (dl.test or val)]}

    def setup(self, stage: str | None = None) -> None:
        if self.uses_default_data():
            self.build_default_data()  # no-op once built; covers setup() without prepare_data()
        splits = self.splits()
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}
        for name in wanted.get(stage or "fit", ("train", "val", "test")):
            if name in self.datasets:
                continue
            entries = self._shard(splits[name])
            if self.check_inputs:
                self._check(name, entries)
            self.datasets[name] = self._dataset(name, entries)

    def _check(self, name: str, entries: list[dict[str, Any]]) -> None:
        """Raise a DataError naming the first bad file; warn about training labels with no foreground."""
        expected = (f"dataset.json's 'modality' ({', '.join(self.modality)})" if self.modality
                    else "the first training image")
        for entry in entries:
            present = check_case(entry, self.num_classes, self.in_channels, self.label_values, expected)
            if name == "train" and present == {0}:
                warnings.warn(f"{entry['label']}: label volume is empty (background only); it trains as "
                              "background everywhere", UserWarning, stacklevel=2)

    def _shard(self, entries: list[dict[str, str]]) -> list[dict[str, str]]:
        """This rank's share of ``entries`` (all of them without DDP)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.world_size <= 1:
            return entries
        world = trainer.world_size
        from monai.data import partition_dataset

        if len(entries) < world:  # fewer cases than ranks: every rank still needs one to step in lockstep
            entries = entries * math.ceil(world / len(entries))
        return partition_dataset(entries, num_partitions=world, shuffle=False, even_divisible=True)[
            trainer.global_rank]

    def _dataset(self, name: str, entries: list[dict[str, str]]) -> Any:
        pad: list[int] | None = None
        if name == "train":
            pad = self.roi_size
            transform = train_transforms(self.preprocessing, self.roi_size, self.num_samples, self.pos, self.neg,
                                         self.augment, self.label_values)
        else:
            transform = eval_transforms(self.preprocessing, with_label=name != "predict",
                                        label_values=self.label_values)
        kind = "train" if name == "train" else ("eval" if name != "predict" else "image")
        key = cache_key(kind, self.preprocessing, self.label_values, pad)
        cache_dir = self.disk_cache_dir() if self.cache == "disk" else None
        return cached_dataset(self.cache, entries, transform, cache_dir=cache_dir, key=key,
                              cache_rate=self.cache_rate, num_workers=self.cache_num_workers)

    def disk_cache_dir(self) -> Path:
        """Where ``data.cache: disk`` writes: ``data.cache_dir``, else under the run folder (or ``data_dir``)."""
        if self.cache_dir:
            return Path(self.cache_dir)
        root = getattr(getattr(self, "trainer", None), "default_root_dir", None)
        if root is not None:
            return Path(root) / "data_cache"
        return Path(self.data_dir) / ".cache"

    def _loader(self, name: str, shuffle: bool, batch_size: int) -> Any:
        from monai.data import list_data_collate

        dataset = self.datasets[name]
        # one replica: the shard is already this rank's own, Lightning must not split it again
        sampler = _EpochSeededSampler(dataset, num_replicas=1, rank=0, shuffle=shuffle, seed=self.seed)
        if self.thread_loader and self.num_workers == 0:
            from monai.data import ThreadDataLoader

            return ThreadDataLoader(dataset, sampler=sampler, batch_size=batch_size, collate_fn=list_data_collate,
                                    num_workers=0, pin_memory=self.pin_memory)
        return self.loader(dataset, sampler=sampler, batch_size=batch_size, collate_fn=list_data_collate)

    def train_dataloader(self) -> Any:
        return self._loader("train", shuffle=True, batch_size=self.batch_size)

    def val_dataloader(self) -> Any:
        return self._loader("val", shuffle=False, batch_size=1)

    def test_dataloader(self) -> Any:
        return self._loader("test", shuffle=False, batch_size=1)

    def predict_dataloader(self) -> Any:
        return self._loader("predict", shuffle=False, batch_size=1)

    def shard_entries(self, name: str) -> Sequence[dict[str, str]]:
        """The entries this rank holds for ``name`` (for inspection and tests)."""
        return self._shard(self.splits()[name])


class _EpochSeededSampler(DistributedSampler):
    """Also reseeds the dataset's random transforms from (seed, epoch, rank) at every epoch.

    MONAI's random transforms keep their own generators, which a checkpoint does not hold; seeding them per
    epoch makes a run resumed from an epoch-end checkpoint draw the same patches as an uninterrupted one.
    """

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        transform = getattr(self.dataset, "transform", None)
        if transform is not None and hasattr(transform, "set_random_state"):
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            transform.set_random_state(seed=(self.seed + 7919 * epoch + 104729 * rank) % 2**32)
