"""Core callbacks wired by the CLI: throughput and learning rates, EMA weight averaging, export on fit end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from toydomain import DOMAIN
from trident_core.callbacks.throughput import batch_size_of
from trident_core.cli import run_domain


def _fit(tmp_path: Path, name: str, *extra: str):
    return run_domain(DOMAIN, ["fit", "--config", "debug", "--trainer.default_root_dir", str(tmp_path / name),
                               "--data.data_dir", str(tmp_path / "data"), *extra])


def test_throughput_is_logged_as_samples_per_second(tmp_path: Path) -> None:
    _fit(tmp_path, "run", "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
         "--trainer.logger.save_dir", str(tmp_path / "csv"), "--trainer.log_every_n_steps", "1")
    rows = list(csv.DictReader(next((tmp_path / "csv").rglob("metrics.csv")).read_text().splitlines()))
    speeds = [float(r["train/device/samples_per_sec"]) for r in rows if r.get("train/device/samples_per_sec")]
    assert speeds and all(s > 0 for s in speeds)
    rates = [float(r["lr-AdamW"]) for r in rows if r.get("lr-AdamW")]  # the default LearningRateTracker
    assert rates and rates[0] == 0.01  # the debug config's lr (warmup_ratio 0)
    assert batch_size_of({"input_ids": torch.zeros(7, 3), "labels": torch.zeros(7)}) == 7
    assert batch_size_of((torch.zeros(5, 2), torch.zeros(5))) == 5


def test_ema_weight_averaging_by_class_path(tmp_path: Path) -> None:
    decay = 0.9
    ema = _fit(tmp_path, "ema", "--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging",
               f"--trainer.callbacks.decay={decay}", "--trainer.callbacks+=step_weights.StepWeights")
    assert any(type(cb).__name__ == "EMAWeightAveraging" for cb in ema.trainer.callbacks)
    steps = next(cb for cb in ema.trainer.callbacks if type(cb).__name__ == "StepWeights").steps
    assert len(steps) == ema.trainer.global_step == 32
    # the exponential average by hand: the first update copies the weights, then e = decay * e + (1 - decay) * w
    expected = dict(steps[0])
    for weights in steps[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * w for k, w in weights.items()}
    final = ema.model.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(final[key], value, rtol=0, atol=1e-6)
    assert not torch.allclose(final["net.body.0.weight"], steps[-1]["net.body.0.weight"], atol=1e-3)
    assert float(ema.trainer.callback_metrics["val/acc"]) > 0.9


def test_export_on_fit_end_exports_the_best_checkpoint(tmp_path: Path) -> None:
    cli = _fit(tmp_path, "run", "--trainer.max_epochs", "3")
    meta = json.loads((tmp_path / "run" / "artifact" / "metadata.json").read_text())
    assert meta["parity"]["onnx"]["max_abs_diff"] < 1e-4
    best = torch.load(cli.trainer.checkpoint_callback.best_model_path, weights_only=True)["state_dict"]
    from safetensors.torch import load_file

    exported = load_file(tmp_path / "run" / "artifact" / "weights.safetensors")
    for key, value in exported.items():
        torch.testing.assert_close(value, best[f"net.{key}"])
