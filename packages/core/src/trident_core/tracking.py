"""W&B tracking that never blocks or fails training.

``TridentWandbLogger`` logs offline (local run files, ``wandb sync`` later) when no credentials are
configured, respects ``WANDB_MODE``, falls back to offline after a bounded wait when the server cannot be
reached, and bounds the wait for uploads at the end when the server dies mid-run. ``ConfigToLogger`` stores the
resolved CLI config as the run's config and as an artifact.
"""

from __future__ import annotations

import logging
import netrc
import os
import socket
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://api.wandb.ai"


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


def log_artifact_safely(logger: WandbLogger, artifact: Any, where: str | Path) -> None:
    """``log_artifact`` through :func:`upload_safely`."""
    upload_safely(logger, lambda: logger.experiment.log_artifact(artifact), artifact.name, where)


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
        log_model: Log checkpoints as artifacts (``True``: at the end; ``"all"``: as they are written).
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
        log_model: bool | str = True,
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


class ConfigToLogger(SaveConfigCallback):
    """Save ``config.yaml`` as LightningCLI does, and make it the W&B run's config and an artifact."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for logger in trainer.loggers:
            if not isinstance(logger, WandbLogger):
                continue
            import wandb

            config = self.parser.dump(self.config, skip_none=False, format="yaml")
            path = Path(logger.save_dir or ".") / f"config-{logger.version}.yaml"
            path.write_text(config)
            try:
                logger.experiment.config.update({"cli": self.config.as_dict()}, allow_val_change=True)
                artifact = wandb.Artifact(f"config-{logger.version}", type="config")
                artifact.add_file(str(path), name="config.yaml")
            except Exception as err:  # a W&B failure must not end training
                log.warning("W&B: the config was not stored on the run (%s); it is in %s", err, path)
                continue
            log_artifact_safely(logger, artifact, path)
