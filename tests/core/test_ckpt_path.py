"""`--ckpt_path best|last|PATH`: one rule for every subcommand (export included), one behaviour for `last` and the
explicit path of the same file, and one read of the checkpoint by Trident per command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from toydomain import DOMAIN, main
from trident_core.cli import run_domain

HIDDEN = "16"  # not the config's 32: a model rebuilt from the config instead of the checkpoint cannot load it


def _args(root: Path, data: Path, *extra: str) -> list[str]:
    return ["--config", "debug", "--trainer.default_root_dir", str(root), "--data.data_dir", str(data), *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch toy run with a non-default net, and no artifact yet."""
    base = tmp_path_factory.mktemp("ckpt")
    run_domain(DOMAIN, ["fit", *_args(base / "run", base / "data", "--model.net.init_args.hidden", HIDDEN,
                                      "--export_on_fit_end.enabled", "false")])
    return base


def _copy(trained: Path, tmp_path: Path) -> Path:
    shutil.copytree(trained / "run", tmp_path / "run")
    return tmp_path / "run"


def _best(root: Path) -> Path:
    return next((root / "checkpoints").glob("best-*.ckpt"))


class Reads:
    """Counts every ``torch.load`` of a checkpoint file (Trident's and Lightning's), by file name."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, bool]] = []
        real = torch.load

        def counting(f: Any, *args: Any, **kwargs: Any) -> Any:
            name = str(f) if isinstance(f, (str, Path)) else str(getattr(f, "path", getattr(f, "name", f)))
            if name.endswith(".ckpt"):
                self.calls.append((Path(name).name, bool(kwargs.get("mmap"))))
            return real(f, *args, **kwargs)

        monkeypatch.setattr(torch, "load", counting)

    def of(self, name: str) -> int:
        return sum(1 for file, _ in self.calls if file == name)


def test_export_best_and_last_resolve_like_test(trained: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(trained, tmp_path)
    capsys.readouterr()
    main(["export", "--ckpt_path", "best", "--trainer.default_root_dir", str(root)])
    report = json.loads(capsys.readouterr().out)
    assert report["checkpoint"] == str(_best(root)) and report["artifact"] == str(root / "artifact")
    main(["export", "--ckpt_path", str(_best(root)), "--output", str(tmp_path / "explicit")])
    capsys.readouterr()
    by_name, by_path = root / "artifact", tmp_path / "explicit"
    assert (by_name / "weights.safetensors").read_bytes() == (by_path / "weights.safetensors").read_bytes()
    meta = [json.loads((folder / "metadata.json").read_text()) for folder in (by_name, by_path)]
    for key in ("domain", "domain_metadata", "metrics", "inputs", "outputs", "files"):
        assert meta[0][key] == meta[1][key], key
    assert load_file(by_name / "weights.safetensors")["body.0.weight"].shape == (int(HIDDEN), 8)
    main(["export", "--ckpt_path", "last", "--trainer.default_root_dir", str(root), "--output",
          str(tmp_path / "last")])
    assert json.loads(capsys.readouterr().out)["checkpoint"] == str(root / "checkpoints" / "last.ckpt")


def test_export_names_the_run_folder_through_a_config(trained: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(trained, tmp_path)
    config = tmp_path / "run.yaml"
    config.write_text(f"trainer:\n  default_root_dir: {root}\n")
    main(["export", "--config", str(config), "--ckpt_path", "best"])
    assert json.loads(capsys.readouterr().out)["artifact"] == str(root / "artifact")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", "best", "--trainer.default_root_dir", str(tmp_path / "nothing")])
    assert exit_info.value.code == 2
    assert "no last checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("spelling", ["last", "path"])
def test_last_and_its_path_behave_the_same(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           spelling: str) -> None:
    """`test` and a resumed `fit` rebuild the model from the checkpoint's hyperparameters for both spellings
    (before, `last` and `best` built it from the config and failed on the weights), and each reads the file twice:
    once Trident (mapped: hyperparameters, W&B run id), once Lightning (restore). Before: 2 or 4 reads."""
    root = _copy(trained, tmp_path)
    last = root / "checkpoints" / "last.ckpt"
    ckpt = "last" if spelling == "last" else str(last)
    reads = Reads(monkeypatch)
    tested = run_domain(DOMAIN, ["test", *_args(root, trained / "data"), "--ckpt_path", ckpt])
    assert tested.model.net.body[0].weight.shape == (int(HIDDEN), 8)
    assert float(tested.trainer.callback_metrics["test/acc"]) > 0.9
    assert reads.calls == [("last.ckpt", True), ("last.ckpt", False)]
    assert tested.saved == torch.load(last, weights_only=True)["trident"]  # run id, metrics: what was read
    reads.calls.clear()
    resumed = run_domain(DOMAIN, ["fit", *_args(root, trained / "data"), "--ckpt_path", ckpt,
                                  "--trainer.max_epochs", "3", "--export_on_fit_end.enabled", "false"])
    assert resumed.trainer.global_step == 3 * 16 and resumed.model.net.body[0].weight.shape == (int(HIDDEN), 8)
    assert reads.of("last.ckpt") == 2
    torch.save(resumed.model.state_dict(), tmp_path.parent / f"resumed-{spelling}.pt")
    other = tmp_path.parent / f"resumed-{'path' if spelling == 'last' else 'last'}.pt"
    if other.is_file():  # the second spelling ran: both resumes end at the same weights
        ours, theirs = resumed.model.state_dict(), torch.load(other, weights_only=True)
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_best_reads_the_best_file_once_and_maps_last(trained: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = _copy(trained, tmp_path)
    reads = Reads(monkeypatch)
    run_domain(DOMAIN, ["validate", *_args(root, trained / "data"), "--ckpt_path", "best"])
    best = _best(root).name
    assert reads.calls == [("last.ckpt", True), (best, True), (best, False)]


def test_export_reads_the_checkpoint_once(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = Reads(monkeypatch)
    main(["export", "--ckpt_path", str(_best(trained / "run")), "--output", str(tmp_path / "art")])
    assert reads.calls == [(_best(trained / "run").name, False)]
