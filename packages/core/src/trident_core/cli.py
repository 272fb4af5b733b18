"""``TridentCLI``: one command grammar for every domain.

``fit|validate|test|predict`` are LightningCLI subcommands (YAML configs with ``class_path``, ``--print_config``,
``link_arguments``); ``export`` turns a checkpoint into an artifact and ``infer`` runs an artifact on files.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback, ModelCheckpoint, OnExceptionCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from trident_core.callbacks import ExportOnFitEnd, NonFiniteGuard, ProgressOnException, RngState
from trident_core.callbacks.out_of_memory_hint import is_out_of_memory
from trident_core.checkpoint_io import AtomicCheckpointIO
from trident_core.commands import checkpoint_folder, export_main, infer_main, resolve_checkpoint
from trident_core.disk import CheckpointPolicy, human, run_report, tensor_bytes
from trident_core.domain import DomainSpec, load_object
from trident_core.errors import ConfigError, ResourceError, TridentError
from trident_core.export import load_checkpoint
from trident_core.links import GivenTarget, check_given_targets, given_targets
from trident_core.precision import resolve_precision
from trident_core.presets import PRESET_DIR, presets
from trident_core.tracking import ConfigToLogger, TridentWandbLogger

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
MIN_FREE_BYTES = 200 * 1024**2
# Layered under every domain's default.yaml: the default `trainer.callbacks`, where users see and change them.
CORE_DEFAULTS = Path(__file__).parent / "configs" / "defaults.yaml"
CALLBACKS_HELP = (
    "Callbacks: `trainer.callbacks` lists the defaults (OutOfMemoryHint, LearningRateTracker, Throughput, plus the "
    "domain's EarlyStopping; see --print_config). A list given in a config or as --trainer.callbacks=[...] "
    "replaces it; `--trainer.callbacks+=CLASS` (or `callbacks+:` in YAML) adds one and keeps the defaults. "
    "Always added, for safety: ProgressOnException (a crash after the first step leaves checkpoints/"
    "on_exception.ckpt) and RngState "
    "(last.ckpt carries the random generators, so `fit --ckpt_path last` resumes exactly). The checkpoint, "
    "last_checkpoint, non_finite and export_on_fit_end callbacks have their own options (--checkpoint.*, ...); "
    "the progress bar follows trainer.enable_progress_bar (Rich on a terminal)."
)


class TridentCLI(LightningCLI):
    """LightningCLI with Trident's defaults: checkpointing, W&B, guards, export on fit end, resume.

    Args:
        spec: The domain being run.
        args: Command-line arguments (``sys.argv[1:]`` when ``None``).
        run: Run the subcommand (``False`` only builds the objects).

    Attributes:
        saved: The ``trident`` key of the ``--ckpt_path`` checkpoint (W&B run id, metrics, version), from the one
            read of the file; ``{}`` without a checkpoint.
    """

    def __init__(self, spec: DomainSpec, args: list[str] | None = None, run: bool = True) -> None:
        self.spec = spec
        # what `--ckpt_path` held when the CLI read it (its `trident` key); the file is read once per command
        self.saved: dict[str, Any] = {}
        self.given_targets: list[GivenTarget] = []  # link targets the user also set (see trident_core.links)
        defaults = [str(CORE_DEFAULTS), str(spec.config_path("default"))]
        parser_kwargs: dict[str, Any] = {
            sub: {"default_config_files": defaults, "description": CALLBACKS_HELP} for sub in LIGHTNING_SUBCOMMANDS
        }
        parser_kwargs["description"] = (
            f"trident-{spec.name}: {spec.description}\n\nAlso: `export --ckpt_path best|last|PATH` and "
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
                # at validation end like last_checkpoint (and before it): last.ckpt then records this epoch's best,
                # which `--ckpt_path best` reads (on train epoch end, after a 1-epoch fit it recorded none)
                "checkpoint.save_on_train_epoch_end": False,
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

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        if self.config.get("subcommand") in LIGHTNING_SUBCOMMANDS and isinstance(args, list):
            defaults = [CORE_DEFAULTS, self.spec.config_path("default")]
            self.given_targets = given_targets(self.spec.links, args, defaults)

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        # after the data exists: a linked value may be computed by it (the labels of a file, a tokenizer's size)
        check_given_targets(self.given_targets, lambda key: self._get(self.config_init, key))

    def _parse_ckpt_path(self) -> None:
        """Resolve ``--ckpt_path best|last|PATH`` to a file, read it once (safely), and take the module's
        hyperparameters from it, as LightningCLI does for a path: ``last`` and the path of the same last.ckpt
        give the same model, the same resume and the same W&B run."""
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else None
        if config is None or not config.get("ckpt_path"):
            return
        folder = checkpoint_folder(config.trainer.default_root_dir, config.last_checkpoint.dirpath)
        config.ckpt_path = str(resolve_checkpoint(config.ckpt_path, folder))
        # mapped, not read: the weights are Lightning's to load when it restores the run
        checkpoint = load_checkpoint(config.ckpt_path, mmap=True)
        if subcommand == "fit" and "optimizer_states" not in checkpoint:
            raise ConfigError(
                f"{config.ckpt_path} holds the weights only (--checkpoint.save_weights_only), not the optimizer state "
                "a resumed fit needs; resume with `--ckpt_path last`, or start a new fit from these weights"
            )
        self.saved = dict(checkpoint.get("trident") or {})
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        del checkpoint
        # from here on as LightningCLI._parse_ckpt_path (which would read the file again)
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        root = Path(config.trainer.default_root_dir)
        for key in ("checkpoint", "last_checkpoint"):
            config[key].dirpath = str(checkpoint_folder(root, config[key].dirpath))
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
        if ckpt:  # resolved and read by _parse_ckpt_path
            run_id = self.saved.get("wandb_run_id")
            if self.subcommand == "fit" and wandb_logger and run_id and logger.init_args.get("id") is None:
                logger.init_args.id = run_id  # continue the same W&B run

    def before_fit(self) -> None:
        """Warn before training when the disk is likely to fill up (see :func:`preflight`)."""
        checkpoint = self._get(self.config, "checkpoint")
        policy = CheckpointPolicy(
            save_top_k=checkpoint.save_top_k,
            keep_last=self._get(self.config, "last_checkpoint").save_top_k != 0,
            best_weights_only=bool(checkpoint.save_weights_only),
            export=bool(self._get(self.config, "export_on_fit_end").enabled),
            max_epochs=self.trainer.max_epochs,
        )
        weights = tensor_bytes(self.model.state_dict())
        preflight(Path(self.trainer.default_root_dir), expected_bytes=policy.estimate(weights), weights=weights)

    def after_fit(self) -> None:
        """Print where the run's files are and how much disk they use."""
        trainer = self.trainer
        if not trainer.is_global_zero:
            return
        dirs = [Path(self._get(self.config, key).dirpath) for key in ("checkpoint", "last_checkpoint")]
        export = self._get(self.config, "export_on_fit_end")
        root = Path(trainer.default_root_dir)
        artifact = Path(export.output or root / "artifact") if export.enabled else None
        wandb_dir = next((Path(lg.save_dir or ".") / "wandb" for lg in trainer.loggers
                          if isinstance(lg, TridentWandbLogger)), None)
        optimizer_state = sum(tensor_bytes(opt.state_dict()["state"]) for opt in trainer.optimizers)
        rank_zero_info(run_report(root, dirs, artifact, wandb_dir, tensor_bytes(self.model.state_dict()),
                                  optimizer_state))

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """The trainer with ``trainer.callbacks`` as configured, plus the two safety callbacks (see
        :data:`CALLBACKS_HELP`) and, on a terminal, Rich as Lightning's default progress bar."""
        config = self._get(self.config_init, "trainer", default={})
        callbacks: list[Callback] = list(config.get("callbacks") or [])
        has = lambda kind: any(isinstance(cb, kind) for cb in callbacks)  # noqa: E731
        if not has(OnExceptionCheckpoint):
            dirpath = self._get(self.config, "checkpoint").dirpath
            callbacks.append(ProgressOnException(dirpath=dirpath, filename="on_exception"))
        if not has(RngState):
            callbacks.append(RngState())
        # Lightning adds a TQDM bar itself unless trainer.enable_progress_bar is false; on a terminal, Rich instead
        if config.get("enable_progress_bar", True) is not False and not has(ProgressBar) and _is_tty():
            callbacks.append(RichProgressBar())
        trainer = super().instantiate_trainer(callbacks=callbacks, **kwargs)
        # OnExceptionCheckpoint is a Checkpoint too; keep it behind ModelCheckpoint so that
        # `trainer.checkpoint_callback` (and `ckpt_path="best"`) mean the ModelCheckpoint.
        # Trainer.callbacks is set by Lightning's callback connector, undeclared on the class: hence the ignores
        on_exception = [cb for cb in trainer.callbacks if isinstance(cb, OnExceptionCheckpoint)]  # type: ignore[attr-defined]
        trainer.callbacks = [cb for cb in trainer.callbacks if cb not in on_exception] + on_exception  # type: ignore[attr-defined]
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


def preflight(root: Path, expected_bytes: int = 0, weights: int = 0) -> None:
    """Fail before training when the output folder cannot be written or the disk is nearly full; warn when the
    free space is below ``expected_bytes``, what the run is likely to write (see
    :meth:`~trident_core.disk.CheckpointPolicy.estimate`; ``weights``: the model's bytes, for the message)."""
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
    if free < expected_bytes:
        rank_zero_warn(
            f"{root}: only {human(free)} free, and this run is likely to write about {human(expected_bytes)} (weights "
            f"{human(weights)}; each checkpoint also holds the optimizer state, about twice the weights with AdamW). "
            "Free some space, set --trainer.default_root_dir elsewhere, keep fewer checkpoints "
            "(--checkpoint.save_top_k) or keep the best without optimizer state (--checkpoint.save_weights_only true)"
        )


def remove_partial_saves(*folders: Path) -> None:
    """Delete the temporary files of checkpoint saves that a killed run left behind (see AtomicCheckpointIO)."""
    for folder in set(folders):
        for tmp in folder.glob(".*.ckpt.tmp-*") if folder.is_dir() else []:
            tmp.unlink(missing_ok=True)


def expand_args(spec: DomainSpec, args: list[str]) -> list[str]:
    """Rewrite ``--preset NAME`` to the preset's config and ``--config NAME`` to the domain's ``NAME.yaml``
    (``--config default`` names the base every run has, and is dropped)."""
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
            # default.yaml is always the base already; layering it twice would append its `callbacks+:` twice
            if Path(value).resolve() != spec.config_path("default").resolve():
                out += ["--config", value]
        else:
            out.append(arg)
        i += 1
    return out


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
            export_main(spec, argv[1:])
            return None
        if argv[:1] == ["infer"]:
            infer_main(spec, argv[1:])
            return None
        if argv[:1] == ["sweep"]:
            from trident_core.sweep import sweep_main

            sweep_main(spec, argv[1:])
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
