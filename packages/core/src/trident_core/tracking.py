"""W&B tracking that never blocks or fails training.

``TridentWandbLogger`` logs offline (local run files, ``wandb sync`` later) when no credentials are
configured, respects ``WANDB_MODE``, falls back to offline after a bounded wait when the server cannot be
reached, and bounds the wait for uploads at the end when the server dies mid-run. ``ConfigToLogger`` stores the
resolved CLI config as the run's config and as an artifact.

Disk: files that Trident writes and keeps (checkpoints, the exported artifact, the config) are logged as artifacts
without a second copy (:func:`log_kept_files`), and whatever W&B stages or caches goes under ``<save_dir>/wandb/``
next to the run files (:func:`keep_wandb_under`), so deleting the run folder frees everything.
"""

from __future__ import annotations

import importlib
import logging
import netrc
import os
import socket
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://api.wandb.ai"
# W&B directories that default to the home folder; Trident points them into the run folder unless the user set them
WANDB_DIR_VARS = ("WANDB_DATA_DIR", "WANDB_CACHE_DIR")
_set_by_trident: dict[str, str] = {}  # the values Trident set (a later run in the same process may move them)


def _default_base_url() -> str:
    try:
        import wandb

        return str(wandb.Settings().base_url)
    except Exception:  # settings files a user broke must not stop training
        return DEFAULT_BASE_URL


def _has_credentials(base_url: str) -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(base_url).hostname or ""
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def server_reachable(base_url: str, timeout: float) -> bool:
    """True when a TCP connection to the W&B server opens within ``timeout`` seconds."""
    parsed = urlparse(base_url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "localhost", port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_mode(timeout: float = 5.0) -> str:
    """``online``, ``offline`` or ``disabled``: ``WANDB_MODE`` if set, else online only with credentials
    and a reachable server."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode in ("offline", "disabled", "dryrun"):
        return "offline" if mode == "dryrun" else mode
    base_url = os.environ.get("WANDB_BASE_URL") or _default_base_url()
    if mode != "online" and not _has_credentials(base_url):
        log.info("W&B: no credentials configured; logging offline (sync later with `wandb sync`)")
        return "offline"
    start = time.monotonic()
    if not server_reachable(base_url, timeout):
        log.warning(
            "W&B: server %s unreachable after %.1fs; logging offline instead (sync later with `wandb sync`)",
            base_url, time.monotonic() - start,
        )
        return "offline"
    return "online"


def upload_safely(logger: WandbLogger, upload: Callable[[], object], what: str, where: str | Path) -> None:
    """Run a W&B artifact upload that never ends training. Online, W&B checks the login with the server
    synchronously, so a server that died after the run started raises, after a wait of its own (found by
    tests/reliability/test_services.py). After one failure the run uploads no more artifacts (``artifacts_failed``),
    so that wait is paid once; what was not uploaded stays on disk, in ``where``.
    """
    if getattr(logger, "artifacts_failed", False):
        log.warning("W&B: did not log %s as an artifact (W&B failed earlier in this run); it stays in %s", what, where)
        return
    try:
        upload()
    except Exception as err:
        logger.artifacts_failed = True  # type: ignore[attr-defined]
        log.warning("W&B: did not log %s as an artifact (%s); it stays in %s", what, err, where)


def keep_wandb_under(save_dir: str | Path) -> dict[str, str]:
    """Point W&B's data folder (``WANDB_DATA_DIR``: the artifact staging area, by default
    ``~/.local/share/wandb``) and cache folder (``WANDB_CACHE_DIR``: its service logs and the artifact cache, by
    default ``~/.cache/wandb``) at ``<save_dir>/wandb`` and ``<save_dir>/wandb/cache``, next to the run files.
    A value the user set is kept. Returns the folders in use."""
    base = Path(save_dir).resolve() / "wandb"
    wanted = {"WANDB_DATA_DIR": base, "WANDB_CACHE_DIR": base / "cache"}
    for key, value in wanted.items():
        current = os.environ.get(key)
        if current is not None and _set_by_trident.get(key) != current:
            continue  # the user's own choice
        os.environ[key] = _set_by_trident[key] = str(value)
    return {key: os.environ[key] for key in WANDB_DIR_VARS}


def kept_file_link(path: str | Path, links: Path) -> Path:
    """A hard link to ``path`` in ``links``: the bytes as they are now, at no extra disk cost. A later save that
    replaces the file (``last.ckpt`` on resume) or deletes it (checkpoint rotation) leaves the link, so an offline
    run uploads, at ``wandb sync``, what it logged. Falls back to ``path`` itself where links are not possible
    (another filesystem)."""
    path = Path(path)
    st = path.stat()
    link = links / f"{st.st_ino}-{st.st_mtime_ns}-{path.name}"
    try:
        links.mkdir(parents=True, exist_ok=True)
        if not (link.exists() and link.samefile(path)):
            link.unlink(missing_ok=True)
            os.link(path, link)
        return link
    except OSError as err:
        log.debug("W&B: no hard link for %s (%s); logging the file itself", path, err)
        return path


def log_kept_files(
    logger: WandbLogger, name: str, kind: str, files: dict[str, Path], where: str | Path,
    aliases: list[str] | None = None, metadata: dict[str, Any] | None = None,
) -> None:
    """Log files that Trident keeps on disk as one W&B artifact without copying them.

    ``files`` maps names in the artifact to files. Each is added through :func:`kept_file_link` with W&B's
    ``immutable`` policy (W&B's default, ``mutable``, copies every file into its staging folder first, and offline
    runs keep those copies until a ``wandb sync``) and ``skip_cache`` (after an upload W&B would otherwise copy the
    file into its artifact cache). Failures never end training (see :func:`upload_safely`).
    """
    def upload() -> None:
        import wandb

        links = Path(logger.save_dir or ".") / "wandb" / "artifact-links"
        artifact = wandb.Artifact(name, type=kind, metadata=metadata)
        for logical, path in sorted(files.items()):
            artifact.add_file(str(kept_file_link(path, links)), name=logical, policy="immutable", skip_cache=True)
        logger.experiment.log_artifact(artifact, aliases=aliases)

    upload_safely(logger, upload, name, where)


def folder_files(folder: str | Path) -> dict[str, Path]:
    """Every file under ``folder``, by its path relative to it (the names in an artifact)."""
    root = Path(folder)
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


class TridentWandbLogger(WandbLogger):
    """Lightning's ``WandbLogger`` with Trident's offline-first, never-blocking behaviour.

    Args:
        project: W&B project.
        save_dir: Where run files go; default ``$WANDB_DIR``, else the trainer's root folder (set by the CLI).
        name: Run name.
        id: Run id; the CLI sets it from the checkpoint on ``fit --ckpt_path`` so the run continues.
        entity: W&B entity (user or team).
        group: Run group.
        tags: Run tags.
        connect_timeout: Seconds to wait for the server before logging offline.
        init_timeout: Seconds ``wandb.init`` may take online before it is retried offline.
        finish_timeout: Seconds the end of the run may wait for uploads (a server that died mid-run would otherwise
            hold the process forever); what is not uploaded by then stays in the local run files for ``wandb sync``
            and W&B marks the run crashed. The default leaves room for checkpoint artifacts on a slow link.
        log_model: Log checkpoints as artifacts (``True``: at the end; ``"all"``: as they are written). Logged as hard
            links to the checkpoint files (no copies; see :func:`log_kept_files`).
        **kwargs: Passed on to ``wandb.init``.
    """

    def __init__(
        self,
        project: str = "trident",
        save_dir: str | None = None,
        name: str | None = None,
        id: str | None = None,
        entity: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        connect_timeout: float = 5.0,
        init_timeout: float = 30.0,
        finish_timeout: float = 300.0,
        log_model: bool | Literal["all"] = True,
        **kwargs: Any,
    ) -> None:
        # The mode goes to wandb.init directly (not WandbLogger's `offline` flag), so checkpoints are still
        # logged as artifacts offline and uploaded by a later `wandb sync`.
        mode = resolve_mode(connect_timeout)
        self.mode = mode
        self.artifacts_failed = False  # set when W&B fails to take an artifact; no more are tried in this run
        import wandb

        settings = kwargs.pop("settings", None) or wandb.Settings(
            init_timeout=init_timeout, finish_timeout=finish_timeout, silent=True
        )
        save_dir = save_dir or os.environ.get("WANDB_DIR") or "."
        if kwargs.get("resume") is None:
            kwargs["resume"] = "allow"  # continue the run when `id` names an existing one
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        self.wandb_dirs = keep_wandb_under(save_dir)
        super().__init__(
            project=project, save_dir=save_dir, name=name, id=id, entity=entity, group=group, tags=tags,
            log_model=log_model, settings=settings, mode=mode, **kwargs,
        )

    @property
    def experiment(self) -> Any:  # type: ignore[override]
        try:
            return super().experiment
        except Exception as err:  # wandb raises assorted errors (CommError, UsageError, timeouts)
            if self._wandb_init.get("mode") == "offline":
                raise
            log.warning("W&B: online init failed (%s); continuing offline", err)
            self._wandb_init["mode"] = "offline"
            self.mode = "offline"
            self._experiment = None
            return super().experiment

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if not self.artifacts_failed:  # after a failure the checkpoints stay on disk, without a warning per save
            upload_safely(self, partial(super().after_save_checkpoint, checkpoint_callback), "the checkpoint",
                          getattr(checkpoint_callback, "dirpath", "the checkpoint folder"))

    def finalize(self, status: str) -> None:
        # logs the checkpoints as artifacts (log_model=True); the run is over, they are on disk either way
        upload_safely(self, partial(super().finalize, status), "the checkpoints", "the checkpoint folder")

    def _scan_and_log_checkpoints(self, checkpoint_callback: Any) -> None:
        """Lightning's checkpoint logging (same artifact name, metadata and aliases), without copies."""
        from lightning.pytorch.loggers.utilities import _scan_checkpoints

        for t, path, score, _tag in _scan_checkpoints(checkpoint_callback, self._logged_model_time):
            metadata = {
                "score": score.item() if hasattr(score, "item") else score,
                "original_filename": Path(path).name,
                type(checkpoint_callback).__name__: {
                    k: getattr(checkpoint_callback, k)
                    for k in ("monitor", "mode", "save_last", "save_top_k", "save_weights_only", "_every_n_train_steps")
                    if hasattr(checkpoint_callback, k)
                },
            }
            if not self._checkpoint_name:
                self._checkpoint_name = f"model-{self.experiment.id}"
            aliases = ["latest", "best"] if path == checkpoint_callback.best_model_path else ["latest"]
            log_kept_files(self, self._checkpoint_name, "model", {"model.ckpt": Path(path)}, Path(path).parent,
                           aliases=aliases, metadata=metadata)
            self._logged_model_time[path] = t


class ConfigToLogger(SaveConfigCallback):
    """Save ``config.yaml`` as LightningCLI does, and make it the W&B run's config and an artifact.

    After Lightning's ``LearningRateFinder`` or ``BatchSizeFinder`` ran, ``config.yaml`` is written again with the
    values they chose (``model.lr``, ``data.batch_size``) and without the finders, so ``fit --config config.yaml``
    trains as this run did.
    """

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from lightning.pytorch.callbacks import BatchSizeFinder, LearningRateFinder

        if not self.save_to_log_dir or not any(
            isinstance(cb, BatchSizeFinder | LearningRateFinder) for cb in getattr(trainer, "callbacks", [])
        ):
            return
        path = Path(trainer.log_dir or ".") / self.config_filename  # log_dir broadcasts: every rank asks
        if not trainer.is_global_zero:
            return
        config = self.config.clone()
        chosen: dict[str, Any] = {}
        lr = getattr(pl_module, "lr", None)
        if "model.lr" in config and lr is not None:
            chosen["model.lr"] = float(lr)
        batch_size = getattr(getattr(trainer, "datamodule", None), "batch_size", None)
        if "data.batch_size" in config and batch_size is not None:
            chosen["data.batch_size"] = int(batch_size)
        for key, value in chosen.items():
            config[key] = value
        callbacks = config.get("trainer.callbacks") or []
        config["trainer.callbacks"] = [cb for cb in callbacks if not _names_tuner(cb)]
        self.parser.save(config, str(path), skip_none=False, overwrite=True, multifile=self.multifile)
        self.config = config
        log.info("%s: the tuners chose %s (written without the tuner callbacks)", path, chosen)
        self.save_config(trainer, pl_module, "fit")

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for logger in trainer.loggers:
            if not isinstance(logger, WandbLogger):
                continue
            config = self.parser.dump(self.config, skip_none=False, format="yaml")
            path = Path(logger.save_dir or ".") / f"config-{logger.version}.yaml"
            path.write_text(config)
            try:
                logger.experiment.config.update({"cli": self.config.as_dict()}, allow_val_change=True)
            except Exception as err:  # a W&B failure must not end training
                log.warning("W&B: the config was not stored on the run (%s); it is in %s", err, path)
                continue
            log_kept_files(logger, f"config-{logger.version}", "config", {"config.yaml": path}, path)


def _names_tuner(callback: Any) -> bool:
    """Whether a ``trainer.callbacks`` config entry is a Lightning tuner (LearningRateFinder, BatchSizeFinder)."""
    from lightning.pytorch.callbacks import BatchSizeFinder, LearningRateFinder

    path = getattr(callback, "class_path", None)
    if not isinstance(path, str):
        return isinstance(callback, BatchSizeFinder | LearningRateFinder)
    module, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return False
    return isinstance(found, type) and issubclass(found, BatchSizeFinder | LearningRateFinder)
