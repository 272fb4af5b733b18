"""`trident-<d> sweep`: an Optuna study in SQLite, each trial a normal fit, resumable, W&B sweep YAML printed."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from toydomain import DOMAIN
from trident_core.cli import run_domain
from trident_core.errors import ConfigError
from trident_core.sweep import read_sweep, trial_command, wandb_sweep_yaml

SWEEP = """
name: toy
configs: [debug]
args: [--trainer.max_epochs, "1"]
n_trials: 3
parameters:
  model.lr: {low: 1.0e-3, high: 1.0e-1, log: true}
  model.net.init_args.hidden: {choices: [8, 32]}
"""


@pytest.mark.slow
def test_sweep_runs_resumes_and_its_best_config_reproduces(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    sweep_file = tmp_path / "SWEEP.yaml"
    sweep_file.write_text(SWEEP.replace("configs: [debug]", f"configs: [debug]\n# data in {tmp_path}")
                          .replace('args: [--trainer.max_epochs, "1"]',
                                   f'args: [--trainer.max_epochs, "1", --data.data_dir, "{tmp_path / "data"}"]'))
    out = tmp_path / "sweep"
    command = ["sweep", "--config", str(sweep_file), "--output", str(out)]
    # a sweep killed after its first trial, in the middle of the second: one COMPLETE, one RUNNING in the study
    run_domain(DOMAIN, [*command, "--n_trials", "1"])
    storage = f"sqlite:///{out / 'study.db'}"
    study = optuna.load_study(study_name="toy", storage=storage)
    first = study.trials[0]
    first_ckpt = out / "trial-000" / "checkpoints" / "last.ckpt"
    stamp = first_ckpt.stat().st_mtime_ns
    study.ask()  # the interrupted trial
    capsys.readouterr()

    run_domain(DOMAIN, command)
    study = optuna.load_study(study_name="toy", storage=storage)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 3 and states[1] == optuna.trial.TrialState.FAIL
    assert study.trials[0].params == first.params and first_ckpt.stat().st_mtime_ns == stamp  # not redone
    for trial in study.trials:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            config = yaml.safe_load((Path(trial.user_attrs["folder"]) / "config.yaml").read_text())
            assert config["model"]["lr"] == trial.params["model.lr"]
            assert config["model"]["net"]["init_args"]["hidden"] == trial.params["model.net.init_args.hidden"]
    # the W&B equivalent, then the best trial
    wandb_yaml = yaml.safe_load((out / "wandb-sweep.yaml").read_text())
    assert wandb_yaml["metric"] == {"name": "val/acc", "goal": "maximize"}
    assert wandb_yaml["command"][-1] == "${args}" and wandb_yaml["command"][:3] == ["${env}", "trident-toy", "fit"]
    assert wandb_yaml["parameters"]["model.lr"]["distribution"] == "log_uniform_values"
    best = json.loads((out / "best.json").read_text())
    assert best["best_trial"] == study.best_trial.number and best["val/acc"] == study.best_value
    # the best trial's config and checkpoint give its metric again
    folder = Path(best["folder"])
    assert Path(best["checkpoint"]).parent == folder / "checkpoints"
    cli = run_domain(DOMAIN, ["validate", "--config", str(folder / "config.yaml"), "--ckpt_path", best["checkpoint"]])
    assert float(cli.trainer.callback_metrics["val/acc"]) == pytest.approx(study.best_value, abs=1e-6)


def test_trial_command_is_the_domains_fit_with_the_pruning_callback(tmp_path: Path) -> None:
    """The fast check of the default pass (the sweeps themselves are slow: every trial is a process)."""
    sweep_file = tmp_path / "SWEEP.yaml"
    sweep_file.write_text(SWEEP + "pruner: {n_startup_trials: 2}\n")
    sweep = read_sweep(sweep_file)
    assert sweep.pruner == {"n_startup_trials": 2, "n_warmup_steps": 0}
    folder = tmp_path / "trial-004"
    command = trial_command(DOMAIN, sweep, folder, {"model.lr": 0.01, "preset": "cpu_ddp2"}, "sqlite:///s.db", 4)
    assert command[1:6] == ["-m", "toydomain", "fit", "--config", "debug"]
    assert command[6:10] == ["--trainer.max_epochs", "1", "--trainer.default_root_dir", str(folder)]
    assert command[10:12] == ["--model.lr=0.01", "--preset=cpu_ddp2"]
    assert command[12:] == ["--trainer.callbacks+=trident_core.callbacks.sweep_trial.SweepTrial",
                            "--trainer.callbacks.storage=sqlite:///s.db", "--trainer.callbacks.study=toy",
                            "--trainer.callbacks.trial=4", "--trainer.callbacks.prune=True",
                            "--trainer.callbacks.n_startup_trials=2", "--trainer.callbacks.n_warmup_steps=0"]
    sweep_file.write_text(SWEEP + "pruner: false\n")
    assert "--trainer.callbacks.prune=False" in trial_command(DOMAIN, read_sweep(sweep_file), folder, {}, "s", 0)
    sweep_file.write_text(SWEEP + "pruner: {patience: 3}\n")
    with pytest.raises(ConfigError, match="pruner: give false .* got {'patience': 3}"):
        read_sweep(sweep_file)
    wandb_yaml = yaml.safe_load(wandb_sweep_yaml(DOMAIN, sweep))
    assert wandb_yaml["metric"] == {"name": "val/acc", "goal": "maximize"}
    assert wandb_yaml["command"] == ["${env}", "trident-toy", "fit", "--config", "debug", "--trainer.max_epochs", "1",
                                     "${args}"]
    assert wandb_yaml["parameters"]["model.lr"]["distribution"] == "log_uniform_values"


def test_bad_sweep_file_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "SWEEP.yaml"
    bad.write_text("parameters:\n  model.lr: {low: 0.1, high: 0.01}\n")
    with pytest.raises(SystemExit) as exit_info:
        run_domain(DOMAIN, ["sweep", "--config", str(bad), "--output", str(tmp_path / "s")])
    assert exit_info.value.code == 2
    assert f"{bad}: parameters.model.lr: give {{low, high" in capsys.readouterr().err


DDP_SWEEP = """
name: ddp
configs: [debug]
args: [--data.data_dir, "{data}"]
n_trials: 3
pruner: {{n_startup_trials: 1}}
parameters:
  model.lr: {{choices: [0.05, 1.0e-7]}}
  preset: {{choices: [fp32, cpu_ddp2]}}
"""


@pytest.mark.slow
@pytest.mark.distributed
def test_sweep_trial_may_be_ddp_and_a_worse_trial_is_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    sweep_file = tmp_path / "SWEEP.yaml"
    sweep_file.write_text(DDP_SWEEP.format(data=tmp_path / "data"))
    out = tmp_path / "sweep"
    out.mkdir()
    storage = f"sqlite:///{out / 'study.db'}"
    study = optuna.create_study(study_name="ddp", storage=storage, direction="maximize")
    # the trials' values fixed: a DDP trial, one that cannot learn (lr 1e-7: pruned after its first epoch), a plain one
    for lr, preset in ((0.05, "cpu_ddp2"), (1.0e-7, "fp32"), (0.05, "fp32")):
        study.enqueue_trial({"model.lr": lr, "preset": preset})
    run_domain(DOMAIN, ["sweep", "--config", str(sweep_file), "--output", str(out)])

    study = optuna.load_study(study_name="ddp", storage=storage)
    states = optuna.trial.TrialState
    ddp, bad, plain = study.trials
    assert [t.state for t in study.trials] == [states.COMPLETE, states.PRUNED, states.COMPLETE]
    assert "Starting with 2 processes" in (out / "trial-000" / "fit.log").read_text()
    config = yaml.safe_load((out / "trial-000" / "config.yaml").read_text())
    assert config["trainer"]["devices"] == 2 and config["trainer"]["strategy"] == "ddp"
    # one intermediate value per validation epoch (max_epochs 2); the pruned trial stopped after its first
    assert sorted(ddp.intermediate_values) == sorted(plain.intermediate_values) == [0, 1]
    assert list(bad.intermediate_values) == [0] and bad.intermediate_values[0] < ddp.intermediate_values[0]
    assert ddp.value == pytest.approx(max(ddp.intermediate_values.values()))
    best = json.loads((out / "best.json").read_text())
    assert best["best_trial"] in (0, 2) and best["val/acc"] == study.best_value
