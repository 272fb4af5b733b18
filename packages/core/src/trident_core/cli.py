"""``TridentCLI``: one command grammar for every domain.

``fit|validate|test|predict`` are LightningCLI subcommands (YAML configs with ``class_path``, ``--print_config``,
``link_arguments``); ``export`` turns a checkpoint into an artifact and ``infer`` runs an artifact on files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import (
    Callback,
    LearningRateMonitor,
    ModelCheckpoint,
    OnExceptionCheckpoint,
    ProgressBar,
    RichProgressBar,
)
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info

from trident_core.callbacks import ExportOnFitEnd, NonFiniteGuard, OutOfMemoryHint, RngState, Throughput
from trident_core.callbacks.out_of_memory_hint import is_out_of_memory
from trident_core.checkpoint_io import AtomicCheckpointIO
from trident_core.domain import DomainSpec, load_object
from trident_core.errors import CheckpointError, ConfigError, ResourceError, TridentError
from trident_core.export import export_checkpoint, load_checkpoint
from trident_core.precision import resolve_precision
from trident_core.presets import PRESET_DIR, presets
from trident_core.tracking import ConfigToLogger, TridentWandbLogger

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
MIN_FREE_BYTES = 200 * 1024**2


class TridentCLI(LightningCLI):
    """LightningCLI with Trident's defaults: checkpointing, W&B, guards, export on fit end, resume.

    Args:
        spec: The domain being run.
        args: Command-line arguments (``sys.argv[1:]`` when ``None``).
        run: Run the subcommand (``False`` only builds the objects).
    """

    def __init__(self, spec: DomainSpec, args: list[str] | None = None, run: bool = True) -> None:
        self.spec = spec
        default = str(spec.config_path("default"))
        parser_kwargs: dict[str, Any] = {sub: {"default_config_files": [default]} for sub in LIGHTNING_SUBCOMMANDS}
        parser_kwargs["description"] = (
            f"trident-{spec.name}: {spec.description}\n\nAlso: `export --ckpt_path CKPT --output DIR` and "
            "`infer --artifact DIR --input PATH` (see `export --help`, `infer --help`). Presets: --preset "
            + "|".join(presets())
        )
        super().__init__(
            load_object(spec.module_class),
            load_object(spec.datamodule_class),
            save_config_callback=ConfigToLogger,
            save_config_kwargs={"overwrite": True},
            parser_kwargs=parser_kwargs,
            seed_everything_default=0,
            auto_configure_optimizers=False,
            args=args,
            run=run,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # `last.ckpt` comes from a second ModelCheckpoint: since Lightning 2.6 the best-model callback only
        # refreshes `last` when it also saved a new best, which would make resumes start from stale weights.
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(NonFiniteGuard, "non_finite")
        parser.add_lightning_class_args(ExportOnFitEnd, "export_on_fit_end")
        parser.add_argument(
            "--bf16_if_native", type=bool, default=False,
            help="when trainer.precision is not set: bf16-mixed on hardware that computes bf16 natively (CUDA GPUs "
            "with bf16, CPUs with AMX or AVX512-BF16), else 32-true. The real recipes set it; an explicit "
            "--trainer.precision or --preset fp32|bf16|fp16 wins",
        )
        parser.set_defaults(
            {
                "checkpoint.monitor": self.spec.monitor,
                "checkpoint.mode": self.spec.monitor_mode,
                "checkpoint.save_last": False,
                "checkpoint.save_top_k": 1,
                "last_checkpoint.filename": "last",
                "last_checkpoint.monitor": None,
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.save_last": False,
                "last_checkpoint.enable_version_counter": False,
                # after validation, so the saved RNG state is the one the next epoch starts from
                "last_checkpoint.save_on_train_epoch_end": False,
                "checkpoint.filename": "best-epoch{epoch:03d}-step{step:06d}",
                "checkpoint.auto_insert_metric_name": False,
                "export_on_fit_end.domain": self.spec.name,
                "trainer.default_root_dir": f"runs/{self.spec.name}",
                "trainer.logger": {
                    "class_path": f"{TridentWandbLogger.__module__}.{TridentWandbLogger.__name__}",
                    "init_args": {"project": f"trident-{self.spec.name}"},
                },
            }
        )
        for source, target in self.spec.links:
            parser.link_arguments(source, target, apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        # Lightning reads the checkpoint's hyperparameters into the config before any hook of ours runs; vet
        # the file first so a hostile or corrupt checkpoint is a CheckpointError, not an unpickling traceback.
        subcommand = self.config.get("subcommand")
        ckpt = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt and Path(ckpt).is_file():
            load_checkpoint(ckpt)
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        root = Path(config.trainer.default_root_dir)
        for key in ("checkpoint", "last_checkpoint"):
            if config[key].dirpath is None:
                config[key].dirpath = str(root / "checkpoints")
        logger = config.trainer.logger
        wandb_logger = _is_class(logger, TridentWandbLogger)
        if wandb_logger and logger.init_args.get("save_dir") is None:
            logger.init_args.save_dir = str(root)
        preflight(root)
        if config.get("bf16_if_native") and config.trainer.precision is None:
            config.trainer.precision, found = resolve_precision(config.trainer.accelerator, config.trainer.strategy)
            rank_zero_info(f"precision {config.trainer.precision} (bf16_if_native: {found}; --trainer.precision "
                           "overrides)")
        if os.environ.get("LOCAL_RANK", "0") == "0":
            remove_partial_saves(Path(config.checkpoint.dirpath), Path(config.last_checkpoint.dirpath))
        ckpt = config.get("ckpt_path")
        folder = Path(config.last_checkpoint.dirpath)
        earlier = [p for p in (folder / "last.ckpt", folder / "on_exception.ckpt") if p.is_file()]
        if self.subcommand == "fit" and not ckpt and earlier:
            # Lightning would silently resume from it (OnExceptionCheckpoint makes `ckpt_path=None` mean "last")
            raise ConfigError(
                f"{earlier[0]} exists: this folder holds an earlier run. Resume it with `--ckpt_path last` (or "
                f"`--ckpt_path {earlier[-1]}`), or start a new run with another --trainer.default_root_dir "
                "(or delete the folder)"
            )
        if ckpt:
            config.ckpt_path = str(resolve_checkpoint(ckpt, Path(config.checkpoint.dirpath)))
            saved = load_checkpoint(config.ckpt_path)
            run_id = saved.get("trident", {}).get("wandb_run_id")
            if self.subcommand == "fit" and wandb_logger and run_id and logger.init_args.get("id") is None:
                logger.init_args.id = run_id  # continue the same W&B run

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        config = self._get(self.config_init, "trainer", default={})
        callbacks: list[Callback] = list(config.get("callbacks") or [])
        has = lambda kind: any(isinstance(cb, kind) for cb in callbacks)  # noqa: E731
        if config.get("logger") and not has(LearningRateMonitor):
            callbacks.append(LearningRateMonitor(logging_interval="step"))
        if config.get("enable_progress_bar", True) is not False and not has(ProgressBar) and _is_tty():
            callbacks.append(RichProgressBar())
        if not has(OnExceptionCheckpoint):
            dirpath = self._get(self.config, "checkpoint").dirpath
            callbacks.append(OnExceptionCheckpoint(dirpath=dirpath, filename="on_exception"))
        if not has(Throughput):
            callbacks.append(Throughput())
        if not has(RngState):
            callbacks.append(RngState())
        if not has(OutOfMemoryHint):
            callbacks.insert(0, OutOfMemoryHint())  # first, so it has seen the batch before any other hook fails
        trainer = super().instantiate_trainer(callbacks=callbacks, **kwargs)
        # OnExceptionCheckpoint is a Checkpoint too; keep it behind ModelCheckpoint so that
        # `trainer.checkpoint_callback` (and `ckpt_path="best"`) mean the ModelCheckpoint.
        on_exception = [cb for cb in trainer.callbacks if isinstance(cb, OnExceptionCheckpoint)]
        trainer.callbacks = [cb for cb in trainer.callbacks if cb not in on_exception] + on_exception
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # leave DeepSpeed/FSDP/async IO alone
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer


def _is_class(value: Any, cls: type) -> bool:
    """True when a ``class_path`` config names ``cls`` or a subclass of it."""
    path = getattr(value, "class_path", None) if value is not None else None
    if not isinstance(path, str) or "." not in path:
        return False
    module, _, name = path.rpartition(".")
    try:
        found = load_object(f"{module}:{name}")
    except (ImportError, AttributeError):
        return False
    return isinstance(found, type) and issubclass(found, cls)


def _is_tty() -> bool:
    return sys.stderr.isatty() or bool(os.environ.get("TRIDENT_RICH"))


def preflight(root: Path) -> None:
    """Fail before training when the output folder cannot be written or the disk is nearly full."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise ConfigError(
            f"{root}: output folder is not writable ({err.strerror}); set --trainer.default_root_dir to a "
            "writable folder"
        ) from None
    free = shutil.disk_usage(root).free
    needed = int(os.environ.get("TRIDENT_MIN_FREE_BYTES", MIN_FREE_BYTES))
    if free < needed:
        raise ConfigError(
            f"{root}: only {free / 1024**2:.0f} MiB free, at least {needed / 1024**2:.0f} MiB are needed for "
            "checkpoints and artifacts; free some space or set --trainer.default_root_dir elsewhere"
        )


def remove_partial_saves(*folders: Path) -> None:
    """Delete the temporary files of checkpoint saves that a killed run left behind (see AtomicCheckpointIO)."""
    for folder in set(folders):
        for tmp in folder.glob(".*.ckpt.tmp-*") if folder.is_dir() else []:
            tmp.unlink(missing_ok=True)


def resolve_checkpoint(ckpt: str, dirpath: Path) -> Path:
    """``last`` and ``best`` name checkpoints of this run's folder; anything else is a path."""
    if ckpt == "last":
        path = dirpath / "last.ckpt"
        if not path.is_file():
            raise CheckpointError(f"{path}: no last checkpoint to resume from; run `fit` without --ckpt_path first")
        return path
    if ckpt == "best":
        last = resolve_checkpoint("last", dirpath)
        states = load_checkpoint(last).get("callbacks", {})
        for key, state in states.items():
            best = state.get("best_model_path") if key.startswith("ModelCheckpoint") else None
            if best and Path(best).name != "last.ckpt" and Path(best).is_file():
                return Path(best)
        raise CheckpointError(f"{dirpath}: no best checkpoint recorded; pass --ckpt_path PATH")
    path = Path(ckpt)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    return path


def expand_args(spec: DomainSpec, args: list[str]) -> list[str]:
    """Rewrite ``--preset NAME`` to the preset's config and ``--config NAME`` to the domain's ``NAME.yaml``."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        flag, eq, value = arg.partition("=")
        if flag in ("--preset", "--config", "-c"):
            if not eq:
                if i + 1 >= len(args):
                    raise ConfigError(f"{flag} needs a value")
                value = args[i + 1]
                i += 1
            if flag == "--preset":
                path = PRESET_DIR / f"{value}.yaml"
                if not path.is_file():
                    raise ConfigError(f"--preset {value}: unknown preset; choose one of {', '.join(presets())}")
                value = str(path)
            elif not Path(value).is_file() and spec.config_path(value).is_file():
                value = str(spec.config_path(value))
            out += ["--config", value]
        else:
            out.append(arg)
        i += 1
    return out


def _export_main(spec: DomainSpec, args: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog=f"trident-{spec.name} export", description="Turn a checkpoint into a self-contained artifact folder."
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `fit`")
    parser.add_argument("--output", required=True, help="artifact folder to write (replaced atomically)")
    ns = parser.parse_args(args)
    result = export_checkpoint(ns.ckpt_path, ns.output, load_object(spec.module_class), domain=spec.name)
    print(json.dumps({"artifact": str(result.path), "parity": result.parity}, indent=2))


def _infer_main(spec: DomainSpec, args: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog=f"trident-{spec.name} infer", description="Run an exported artifact (onnxruntime) on input files."
    )
    parser.add_argument("--artifact", required=True, help="artifact folder written by `export`")
    parser.add_argument("--input", required=True, help="input file, folder, manifest, or - for stdin")
    parser.add_argument("--output", default=None, help="where to write results (default: JSONL on stdout)")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="inputs per onnxruntime call (default: the domain's own)")
    ns = parser.parse_args(args)
    if ns.batch_size is not None and ns.batch_size < 1:
        raise ConfigError(f"--batch_size must be >= 1, got {ns.batch_size}")
    infer = load_object(spec.infer)
    kwargs = {} if ns.batch_size is None else {"batch_size": ns.batch_size}
    rows = infer(ns.artifact, ns.input, ns.output, **kwargs)  # the domain writes --output itself
    if ns.output is None:
        for row in rows or []:
            print(json.dumps(row, ensure_ascii=False))


def run_domain(spec: DomainSpec, args: list[str] | None = None, *, exit_on_error: bool = True) -> TridentCLI | None:
    """Run a domain's command line; returns the CLI (with ``trainer``, ``model``, ``datamodule``) for LightningCLI
    subcommands.

    A :class:`~trident_core.errors.TridentError` is printed as ``error: ...`` with exit code 2 (or re-raised
    when ``exit_on_error`` is false).
    """
    argv = list(sys.argv[1:] if args is None else args)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*predict_dataloader.*")
    # Noise that says nothing to a Trident user: the CLI passes rewritten argv as `args` on purpose, fresh
    # fits never resume implicitly (checked in before_instantiate_classes), and FLOPs need a GPU to matter.
    warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter is intended.*")
    warnings.filterwarnings("ignore", message=r".*was called without a model.*")
    warnings.filterwarnings("ignore", message=r".*there is no last checkpoint available.*")
    warnings.filterwarnings("ignore", message=r".*you need to define a `flops_per_batch`.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    try:
        if argv[:1] == ["export"]:
            _export_main(spec, argv[1:])
            return None
        if argv[:1] == ["infer"]:
            _infer_main(spec, argv[1:])
            return None
        try:
            return TridentCLI(spec, expand_args(spec, argv))
        except RuntimeError as err:
            if not is_out_of_memory(err):
                raise
            notes = getattr(err, "__notes__", None)
            raise ResourceError(notes[-1] if notes else f"out of memory: {err}") from err
    except TridentError as err:
        if not exit_on_error:
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
