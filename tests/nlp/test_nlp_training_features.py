"""A real domain with the core training features: `--model.compile true` (Inductor), Lightning's finders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from nlp_fixtures import one_thread  # noqa: F401 (fixture)

from trident_core.cli import run_domain
from trident_core.compile import is_compiled
from trident_nlp.cli import DOMAIN


@pytest.mark.slow  # Inductor builds C++ kernels: minutes on 2 loaded cores
@pytest.mark.usefixtures("one_thread")
def test_nlp_debug_fit_compiled_with_inductor(tmp_path: Path) -> None:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    cli = run_domain(DOMAIN, ["fit", "--config", "debug", "--trainer.default_root_dir", str(tmp_path / "run"),
                              "--data.data_dir", str(tmp_path / "data"), "--model.compile", "true"])
    assert is_compiled(cli.model.net.encoder)  # no fallback: Inductor compiled and ran the encoder
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    assert cli.trainer.global_step == 4 and torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert not any("_orig_mod" in key for key in ckpt["state_dict"])
    assert set(ckpt["state_dict"]) == set(cli.model.state_dict())
    meta = json.loads((tmp_path / "run" / "artifact" / "metadata.json").read_text())
    assert meta["parity"]["onnx"]["max_abs_diff"] < 1e-4


@pytest.mark.slow  # two searches and a fit of the nlp model
@pytest.mark.usefixtures("one_thread")
def test_nlp_debug_fit_with_batch_size_and_learning_rate_finders(tmp_path: Path) -> None:
    cli = run_domain(DOMAIN, [
        "fit", "--config", "debug", "--trainer.default_root_dir", str(tmp_path / "run"),
        "--data.data_dir", str(tmp_path / "data"), "--trainer.limit_train_batches", "1.0",
        "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(tmp_path / "run"),
        "--trainer.callbacks+=BatchSizeFinder", "--trainer.callbacks.init_val=16",
        "--trainer.callbacks.max_trials=2", "--trainer.callbacks.steps_per_trial=1",
        "--trainer.callbacks+=LearningRateFinder", "--trainer.callbacks.num_training_steps=20",
    ])
    chosen_lr, chosen_batch = cli.model.lr, cli.datamodule.batch_size
    assert chosen_lr is not None and chosen_batch == 32
    assert cli.trainer.train_dataloader.batch_size == chosen_batch
    assert cli.trainer.lr_scheduler_configs[0].scheduler.base_lrs[0] == pytest.approx(chosen_lr)
    config = yaml.safe_load((Path(cli.trainer.log_dir) / "config.yaml").read_text())
    assert config["model"]["lr"] == chosen_lr and config["data"]["batch_size"] == chosen_batch
    assert not any("Finder" in cb["class_path"] for cb in config["trainer"]["callbacks"])
