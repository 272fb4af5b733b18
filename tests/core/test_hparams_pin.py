"""Pins the Lightning behaviour TaskModule relies on: no public API tells a module's ``__init__`` that LightningCLI
built it, so TaskModule reads Lightning's private ``_given_hyperparameters`` context variable. Under LightningCLI it
holds the module's config (the net as ``class_path`` + ``init_args``) during ``__init__``; built in Python it is
``None``. If a Lightning upgrade changes either, these tests fail (and checkpoints would stop rebuilding)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters

from toydomain import DOMAIN, MLP, ToyModule
from trident_core.cli import TridentCLI, expand_args
from trident_core.export import load_checkpoint, module_from_checkpoint


class Probe(ToyModule):
    """The toy module, recording what the context variable holds while it is built."""

    seen: ClassVar[list[Any]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        Probe.seen.append(_given_hyperparameters.get())
        super().__init__(*args, **kwargs)


class Built(TridentCLI):
    def _run_subcommand(self, subcommand: str) -> None:
        return None


def test_lightning_cli_gives_the_config_during_init(tmp_path: Path) -> None:
    spec = dataclasses.replace(DOMAIN, module_class=f"{__name__}:Probe")
    cli = Built(spec, expand_args(spec, ["fit", "--config", "debug", "--trainer.default_root_dir",
                                         str(tmp_path / "run"), "--data.data_dir", str(tmp_path / "data")]))
    given = Probe.seen[-1]
    assert given["net"] == {"class_path": "toydomain.MLP", "init_args": {"in_features": 8, "hidden": 32,
                                                                          "num_classes": 3}}
    assert given["optimizer"]["class_path"] == "torch.optim.AdamW"
    assert given["num_classes"] == 3  # linked from the data
    # what TaskModule makes of it: the configs are the hyperparameters, so a checkpoint rebuilds the module
    assert cli.model.hparams["net"] == given["net"] and cli.model.hparams["optimizer"] == given["optimizer"]
    assert _given_hyperparameters.get() is None  # only while the module is built


def test_built_in_python_nothing_is_given_and_objects_are_left_out() -> None:
    module = Probe(net=MLP())
    assert Probe.seen[-1] is None
    assert "net" not in module.hparams and "optimizer" not in module.hparams
    assert module.hparams["num_classes"] == 3


def test_a_cli_checkpoint_rebuilds_from_those_hyperparameters(tmp_path: Path) -> None:
    from trident_core.cli import run_domain

    run_domain(DOMAIN, ["fit", "--config", "debug", "--trainer.default_root_dir", str(tmp_path / "run"),
                        "--data.data_dir", str(tmp_path / "data"), "--trainer.max_epochs", "1",
                        "--model.net.init_args.hidden", "24", "--export_on_fit_end.enabled", "false"])
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    module = module_from_checkpoint(ckpt, ToyModule)
    assert module.net.body[0].weight.shape == (24, 8)
