"""The audio CLI refuses a net sample rate that disagrees with the data's (the data's value is linked into it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trident_audio.cli import main


def _args(tmp_path: Path) -> list[str]:
    return ["--config", "debug", "--trainer.default_root_dir", str(tmp_path / "run"),
            "--data.data_dir", str(tmp_path / "data")]


def test_a_net_sample_rate_that_disagrees_with_the_data_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *_args(tmp_path), "--model.net.init_args.sample_rate", "8000"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "model.net.init_args.sample_rate is 8000 (the command line)" in err
    assert "linked from data.sample_rate, which is 16000" in err and "Set --data.sample_rate instead" in err
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training

