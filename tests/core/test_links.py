"""A value linked from the data (DomainSpec.links) and also given at its target is an error, not overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from toydomain import DOMAIN, main
from trident_core.cli import run_domain
from trident_core.links import given_targets


def _args(tmp_path: Path) -> list[str]:
    return ["--trainer.default_root_dir", str(tmp_path / "run"), "--data.data_dir", str(tmp_path / "data")]


def test_a_target_in_a_yaml_config_that_disagrees_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text("model:\n  num_classes: 5\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "debug", "--config", str(config), *_args(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"model.num_classes is 5 ({config})" in err
    assert "linked from data.num_classes, which is 3" in err and "Set --data.num_classes instead" in err
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training


def test_a_target_that_agrees_with_the_linked_value_is_accepted(tmp_path: Path) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text("model:\n  num_classes: 3\n")  # restates data.num_classes: redundant, not wrong
    cli = run_domain(DOMAIN, ["fit", "--config", "debug", "--config", str(config), *_args(tmp_path),
                              "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                              "--trainer.limit_val_batches", "1", "--export_on_fit_end.enabled", "false"])
    assert cli is not None and cli.model.num_classes == 3 and cli.trainer.global_step == 2


def test_a_module_flag_that_is_linked_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model.num_classes", "5"])
    assert exit_info.value.code == 2
    assert 'Linked "model.num_classes" must be given via "data.num_classes"' in capsys.readouterr().err


def test_given_targets_finds_every_way_of_writing_a_target(tmp_path: Path) -> None:
    links = [("data.sample_rate", "model.net.init_args.sample_rate"), ("data.n", "model.n")]
    nested = tmp_path / "nested.yaml"
    nested.write_text("model:\n  net:\n    class_path: X\n    init_args:\n      sample_rate: 8000\n")
    flat = tmp_path / "flat.yaml"
    flat.write_text("model:\n  net:\n    class_path: X\n    sample_rate: 22050\n  n: 2\n")

    def found(args: list[str], files: tuple[Path, ...] = ()) -> dict[str, tuple[object, str]]:
        return {g.target: (g.value, g.where) for g in given_targets(links, ["fit", *args], files)}

    assert found([]) == {}
    assert found(["--data.sample_rate", "8000", "--model.net.init_args.dropout", "0.1"]) == {}
    assert found(["--model.net.init_args.sample_rate", "8000"]) == {
        "model.net.init_args.sample_rate": (8000, "the command line")}
    assert found(["--model.net.sample_rate=8000"])["model.net.init_args.sample_rate"][0] == 8000
    assert found(["--model.net", '{"class_path": "X", "init_args": {"sample_rate": 8000}}'])[
        "model.net.init_args.sample_rate"][0] == 8000
    assert found([], (nested,)) == {"model.net.init_args.sample_rate": (8000, str(nested))}
    assert found(["--config", str(flat)]) == {"model.net.init_args.sample_rate": (22050, str(flat)),
                                              "model.n": (2, str(flat))}
    # the last one wins, as in the parser: the default file, then --config files, then flags
    assert found(["--config", str(flat), "--model.n", "7"], (nested,)) == {
        "model.net.init_args.sample_rate": (22050, str(flat)), "model.n": (7, "the command line")}
