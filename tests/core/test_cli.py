"""The shared CLI on the toy domain: every subcommand, config names, presets, clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from toydomain import DOMAIN, main
from trident_core.cli import run_domain
from trident_core.presets import PRESET_DIR, presets


def _args(tmp_path: Path) -> list[str]:
    return ["--trainer.default_root_dir", str(tmp_path / "run"), "--data.data_dir", str(tmp_path / "data")]


def test_fit_validate_test_predict_through_cli(tmp_path: Path) -> None:
    cli = run_domain(DOMAIN, ["fit", "--config", "debug", *_args(tmp_path)])
    assert cli.trainer.global_step == 2 * 16
    assert float(cli.trainer.callback_metrics["val/acc"]) > 0.9  # blobs are separable: real learning
    ckpt_dir = tmp_path / "run" / "checkpoints"
    assert (ckpt_dir / "last.ckpt").is_file()
    assert any(p.name.startswith("best-") for p in ckpt_dir.iterdir())
    # best.ckpt loads with the safe loader and carries the module's hyperparameters as plain config
    best = next(p for p in ckpt_dir.iterdir() if p.name.startswith("best-"))
    ckpt = torch.load(best, weights_only=True)
    assert ckpt["hyper_parameters"]["net"]["class_path"] == "toydomain.MLP"
    assert ckpt["hyper_parameters"]["num_classes"] == 3  # linked from the datamodule
    for sub in ("validate", "test"):
        cli = run_domain(DOMAIN, [sub, "--config", "debug", *_args(tmp_path), "--ckpt_path", "best"])
        assert float(cli.trainer.callback_metrics[f"{'val' if sub == 'validate' else 'test'}/acc"]) > 0.9
    cli = run_domain(DOMAIN, ["predict", "--config", "debug", *_args(tmp_path), "--ckpt_path", "last"])
    assert cli.trainer.predict_loop.predictions


def test_print_config_parses_every_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert {"ddp", "fsdp", "cpu_ddp2", "bf16", "fp16", "fp32", "deepspeed"} <= set(presets())
    for preset in presets():
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", "--config", "debug", "--preset", preset, "--print_config"])
        assert exit_info.value.code in (0, None)
        config = yaml.safe_load(capsys.readouterr().out)
        preset_cfg = yaml.safe_load((PRESET_DIR / f"{preset}.yaml").read_text())
        for key, value in preset_cfg["trainer"].items():
            if isinstance(value, dict):  # class_path + the preset's init_args, among the defaults
                assert config["trainer"][key]["class_path"] == value["class_path"], (preset, key)
                assert value["init_args"].items() <= config["trainer"][key]["init_args"].items(), (preset, key)
            else:
                assert config["trainer"][key] == value, (preset, key)
        assert config["model"]["net"]["class_path"] == "toydomain.MLP"


def test_unknown_preset_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--preset", "warp9"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--preset warp9: unknown preset" in err and "cpu_ddp2" in err


def test_export_and_infer_subcommands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_domain(DOMAIN, ["fit", "--config", "debug", *_args(tmp_path)])
    capsys.readouterr()
    out = tmp_path / "exported"
    main(["export", "--ckpt_path", str(tmp_path / "run" / "checkpoints" / "last.ckpt"), "--output", str(out)])
    report = json.loads(capsys.readouterr().out)
    assert report["parity"]["onnx"]["max_abs_diff"] < 1e-4
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["domain"] == "toy" and meta["domain_metadata"] == {"num_classes": 3}
    assert "val/acc" in meta["metrics"]
    main(["infer", "--artifact", str(out), "--input", str(tmp_path / "data" / "test.pt")])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    data = torch.load(tmp_path / "data" / "test.pt", weights_only=True)
    accuracy = sum(r["label"] == int(y) for r, y in zip(rows, data["y"], strict=True)) / len(rows)
    assert len(rows) == 64 and accuracy > 0.9
    # the domain's own infer options (DomainSpec.infer_options) reach its infer; an unknown one is exit 2
    main(["infer", "--artifact", str(out), "--input", str(tmp_path / "data" / "test.pt"), "--top_k", "2"])
    ranked = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in ranked] == [r["label"] for r in rows]
    assert all(len(r["top_k"]) == 2 and r["top_k"][0] == r["label"] for r in ranked)
    with pytest.raises(SystemExit) as exit_info:
        main(["infer", "--artifact", str(out), "--input", str(tmp_path / "data" / "test.pt"), "--decoder", "beam"])
    assert exit_info.value.code == 2 and "unrecognized arguments: --decoder beam" in capsys.readouterr().err


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--config", "debug", *_args(tmp_path), "--ckpt_path", "last"])
    assert "no last checkpoint to resume from" in capsys.readouterr().err


def test_unwritable_output_is_detected_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit):
        main(["fit", "--config", "debug", "--trainer.default_root_dir", str(blocker / "run")])
    assert "output folder is not writable" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_fresh_fit_refuses_to_overwrite_an_earlier_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_domain(DOMAIN, ["fit", "--config", "debug", *_args(tmp_path)])
    before = (tmp_path / "run" / "checkpoints" / "last.ckpt").read_bytes()
    with pytest.raises(SystemExit):
        main(["fit", "--config", "debug", *_args(tmp_path)])
    assert "holds an earlier run. Resume it with `--ckpt_path last`" in capsys.readouterr().err
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").read_bytes() == before


def test_export_on_fit_end_can_be_switched_off(tmp_path: Path) -> None:
    run_domain(DOMAIN, ["fit", "--config", "debug", *_args(tmp_path), "--export_on_fit_end.enabled", "false"])
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "run" / "artifact").exists()
