"""Lightning's LearningRateFinder and BatchSizeFinder through the CLI: `model.lr`, `data.batch_size`, config.yaml."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from toydomain import DOMAIN, ToyModule
from trident_core.cli import run_domain


def _fit(tmp_path: Path, *extra: str):
    return run_domain(DOMAIN, [
        "fit", "--config", "debug", "--trainer.default_root_dir", str(tmp_path / "run"),
        "--data.data_dir", str(tmp_path / "data"), "--trainer.logger", "CSVLogger",
        "--trainer.logger.save_dir", str(tmp_path / "run"), *extra,
    ])


def _config(cli) -> dict:
    return yaml.safe_load((Path(cli.trainer.log_dir) / "config.yaml").read_text())


def test_learning_rate_finder_sets_the_optimizer_and_config(tmp_path: Path) -> None:
    cli = _fit(tmp_path, "--trainer.callbacks+=LearningRateFinder", "--trainer.callbacks.num_training_steps=20",
               "--trainer.callbacks.min_lr=1e-5", "--trainer.callbacks.max_lr=1.0")
    chosen = cli.model.lr
    assert chosen is not None and 1e-5 < chosen < 1.0 and chosen != 0.01  # the debug config's AdamW lr
    # the schedule trains with the chosen lr (warmup 0 in the toy: the first step's lr is the base lr)
    scheduler = cli.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.base_lrs == [chosen]
    assert cli.trainer.optimizers[0].defaults["lr"] == 0.01  # the callable's lr, scaled to the chosen one
    config = _config(cli)
    assert config["model"]["lr"] == chosen
    assert not any("LearningRateFinder" in cb["class_path"] for cb in config["trainer"]["callbacks"])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["lr"] == chosen
    assert float(cli.trainer.callback_metrics["val/acc"]) > 0.9
    # the written config reproduces the run's lr without searching again
    again = run_domain(DOMAIN, ["fit", "--config", str(Path(cli.trainer.log_dir) / "config.yaml"),
                                "--trainer.default_root_dir", str(tmp_path / "again"), "--trainer.max_epochs", "1",
                                "--checkpoint.dirpath", str(tmp_path / "again" / "checkpoints"),
                                "--last_checkpoint.dirpath", str(tmp_path / "again" / "checkpoints"),
                                "--trainer.logger", "false"])
    assert again.model.lr == chosen
    assert again.trainer.lr_scheduler_configs[0].scheduler.base_lrs == [chosen]


def test_batch_size_finder_sets_the_loader_and_config(tmp_path: Path) -> None:
    # from the configured 16 (Lightning starts at init_val=2); doubles twice, as CPU memory never runs out here
    cli = _fit(tmp_path, "--trainer.callbacks+=BatchSizeFinder", "--trainer.callbacks.init_val=16",
               "--trainer.callbacks.max_trials=2", "--trainer.callbacks.steps_per_trial=1")
    chosen = cli.datamodule.batch_size
    assert chosen == 32  # 16 ran, doubled; the second trial ends the search (max_trials)
    assert cli.trainer.train_dataloader.batch_size == chosen
    assert cli.trainer.num_training_batches == -(-256 // chosen)  # 256 training samples
    # the default schedule was rebuilt for the new number of steps
    assert cli.trainer.global_step == 2 * cli.trainer.num_training_batches
    config = _config(cli)
    assert config["data"]["batch_size"] == chosen
    assert not any("BatchSizeFinder" in cb["class_path"] for cb in config["trainer"]["callbacks"])


def test_lr_scales_parameter_groups_of_the_optimizer() -> None:
    from toydomain import MLP

    def optimizer(groups):
        return torch.optim.SGD(groups, lr=0.1)

    module = ToyModule(net=MLP(), optimizer=optimizer, lr=0.02)
    module.param_groups = lambda: [  # a head with twice the base lr, as nlp's head_lr
        {"params": list(module.net.body[0].parameters())},
        {"params": list(module.net.body[2].parameters()), "lr": 0.2},
    ]
    module.scheduler_factory = lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    built = module.configure_optimizers()["optimizer"]
    assert [g["lr"] for g in built.param_groups] == [0.02, 0.04]
