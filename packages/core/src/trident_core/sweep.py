"""``trident-<domain> sweep --config SWEEP.yaml``: a hyperparameter search on Optuna, every trial a normal run.

The study lives in ``<output>/study.db`` (SQLite), so a killed sweep resumes: finished trials are kept, a trial the
kill interrupted is marked failed and its place taken by a new one. Each trial is the domain's normal ``fit``
command, run as a subprocess (``python -m <domain> fit ...``, so a trial may be DDP: ``preset: cpu_ddp2``), in its
own folder (``<output>/trial-NNN``: checkpoints, artifact, config.yaml, fit.log), its W&B run in the group named
after the sweep. Inside it, :class:`~trident_core.callbacks.sweep_trial.SweepTrial` reports the domain's monitored
metric to the study after every validation epoch, stops the run when Optuna's MedianPruner prunes it, and writes
the objective (the best ``checkpoint.monitor`` value) to ``sweep-trial.json``. ``best.json`` and
``wandb-sweep.yaml`` (the same search for ``wandb sweep``) are written beside the trials.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trident_core.domain import DomainSpec
from trident_core.errors import ConfigError, TridentError
from trident_core.output import write_text_atomic

KEYS = ("name", "configs", "args", "parameters", "n_trials", "seed", "pruner")
PRUNER_KEYS = ("n_startup_trials", "n_warmup_steps")
EXAMPLE = "parameters:\n  model.lr: {low: 1.0e-4, high: 1.0e-1, log: true}\n  data.batch_size: {choices: [16, 32]}"


@dataclass
class Sweep:
    """A parsed SWEEP.yaml."""

    name: str
    configs: list[str]
    args: list[str]
    parameters: dict[str, dict[str, Any]]
    n_trials: int
    seed: int
    pruner: dict[str, int] | None  # MedianPruner's arguments; None: no pruning


def read_sweep(path: str | Path) -> Sweep:
    """Read and check a SWEEP.yaml (keys: ``name``, ``configs``, ``args``, ``parameters``, ``n_trials``, ``seed``).

    Each parameter is a config key with ``{low, high[, log, step]}`` (float, or int when both bounds are
    integers) or ``{choices: [...]}``.

    Raises:
        ConfigError: naming the file and key.
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the sweep file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; a sweep file has {list(KEYS)}")
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict) or not parameters:
        raise ConfigError(f"{path}: `parameters` must map config keys to ranges, e.g.\n{EXAMPLE}")
    for key, p in parameters.items():
        ok = isinstance(p, dict) and (
            (isinstance(p.get("choices"), list) and p["choices"] and set(p) <= {"choices"})
            or ({"low", "high"} <= set(p) <= {"low", "high", "log", "step"} and p["low"] < p["high"])
        )
        if not ok:
            raise ConfigError(f"{path}: parameters.{key}: give {{low, high[, log, step]}} with low < high, or "
                              f"{{choices: [...]}}; got {p!r}")
    configs = data.get("configs") or []
    n_trials = data.get("n_trials", 10)
    if not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError(f"{path}: n_trials must be a positive integer, got {n_trials!r}")
    pruner = data.get("pruner", {})
    if pruner is not False and not (
            isinstance(pruner, dict) and set(pruner) <= set(PRUNER_KEYS)
            and all(isinstance(v, int) and v >= 0 for v in pruner.values())):
        raise ConfigError(f"{path}: pruner: give false (no pruning) or MedianPruner's {{n_startup_trials: N, "
                          f"n_warmup_steps: N}} (non-negative integers); got {pruner!r}")
    return Sweep(
        name=str(data.get("name") or path.stem), configs=[configs] if isinstance(configs, str) else list(configs),
        args=[str(a) for a in data.get("args") or []], parameters=parameters, n_trials=n_trials,
        seed=int(data.get("seed", 0)),
        pruner=None if pruner is False else {"n_startup_trials": 5, "n_warmup_steps": 0, **pruner},
    )


def suggest(trial: Any, key: str, p: dict[str, Any]) -> Any:
    """The trial's value for one parameter."""
    if "choices" in p:
        return trial.suggest_categorical(key, p["choices"])
    if isinstance(p["low"], int) and isinstance(p["high"], int):
        return trial.suggest_int(key, p["low"], p["high"], step=p.get("step", 1), log=bool(p.get("log", False)))
    return trial.suggest_float(key, float(p["low"]), float(p["high"]), step=p.get("step"), log=bool(p.get("log")))


def fit_args(sweep: Sweep, folder: Path, params: dict[str, Any]) -> list[str]:
    """The ``fit`` command line of one trial (a ``preset`` parameter becomes ``--preset=NAME``)."""
    args = ["fit", *[a for c in sweep.configs for a in ("--config", c)], *sweep.args]
    args += ["--trainer.default_root_dir", str(folder)]
    return args + [f"--{key}={value}" for key, value in params.items()]


def trial_command(spec: DomainSpec, sweep: Sweep, folder: Path, params: dict[str, Any], storage: str,
                  number: int) -> list[str]:
    """The trial's process: the domain's own ``fit`` (``python -m <package>``) plus the SweepTrial callback."""
    package = spec.module_class.split(":")[0].split(".")[0]
    if importlib.util.find_spec(f"{package}.__main__") is None:
        raise ConfigError(f"sweep runs each trial as `python -m {package} fit`, but {package} has no __main__.py")
    pruner = sweep.pruner or {}
    callback = ["--trainer.callbacks+=trident_core.callbacks.sweep_trial.SweepTrial",
                f"--trainer.callbacks.storage={storage}", f"--trainer.callbacks.study={sweep.name}",
                f"--trainer.callbacks.trial={number}", f"--trainer.callbacks.prune={sweep.pruner is not None}"]
    callback += [f"--trainer.callbacks.{key}={value}" for key, value in pruner.items()]
    return [sys.executable, "-m", package, *fit_args(sweep, folder, params), *callback]


def wandb_sweep_yaml(spec: DomainSpec, sweep: Sweep) -> str:
    """The same search for ``wandb sweep`` / ``wandb agent`` (W&B's Bayesian search instead of Optuna's TPE)."""
    import yaml

    parameters: dict[str, Any] = {}
    for key, p in sweep.parameters.items():
        if "choices" in p:
            parameters[key] = {"values": p["choices"]}
        elif isinstance(p["low"], int) and isinstance(p["high"], int):
            parameters[key] = {"distribution": "int_uniform", "min": p["low"], "max": p["high"]}
        else:
            kind = "log_uniform_values" if p.get("log") else "uniform"
            parameters[key] = {"distribution": kind, "min": float(p["low"]), "max": float(p["high"])}
    config = {
        "name": sweep.name, "method": "bayes",
        "metric": {"name": spec.monitor, "goal": "maximize" if spec.monitor_mode == "max" else "minimize"},
        "parameters": parameters,
        "command": ["${env}", f"trident-{spec.name}", "fit",
                    *[a for c in sweep.configs for a in ("--config", c)], *sweep.args, "${args}"],
    }
    return yaml.safe_dump(config, sort_keys=False)


def sweep_main(spec: DomainSpec, argv: list[str]) -> Any:
    """``trident-<domain> sweep``; returns the Optuna study."""
    parser = argparse.ArgumentParser(prog=f"trident-{spec.name} sweep", description=__doc__)
    parser.add_argument("--config", required=True, help="the sweep file (SWEEP.yaml)")
    parser.add_argument("--output", default=None, help=f"sweep folder (default: runs/{spec.name}/sweep-NAME)")
    parser.add_argument("--n_trials", type=int, default=None, help="finished trials to reach (default: the file's)")
    ns = parser.parse_args(argv)
    sweep = read_sweep(ns.config)
    try:
        import optuna
    except ImportError:
        raise ConfigError("sweep needs Optuna: pip install 'trident-core[sweep]'") from None
    from trident_core.callbacks.sweep_trial import RESULT

    root = Path(ns.output or f"runs/{spec.name}/sweep-{sweep.name}").resolve()
    root.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{root / 'study.db'}"
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(
        study_name=sweep.name, storage=storage, load_if_exists=True,
        direction="maximize" if spec.monitor_mode == "max" else "minimize",
        sampler=optuna.samplers.TPESampler(seed=sweep.seed),
        pruner=optuna.pruners.MedianPruner(**sweep.pruner) if sweep.pruner else optuna.pruners.NopPruner(),
    )
    states = optuna.trial.TrialState
    for trial in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
        # left by a killed sweep: Optuna has no public id for it; the storage's own call marks it failed
        storage.set_trial_state_values(trial._trial_id, states.FAIL)
    wandb_file = root / "wandb-sweep.yaml"
    write_text_atomic(wandb_file, wandb_sweep_yaml(spec, sweep))
    print(f"# the same search on a W&B server ({wandb_file}): wandb sweep {wandb_file} && wandb agent "
          f"ENTITY/PROJECT/SWEEP_ID\n{wandb_file.read_text()}", flush=True)

    def objective(trial: optuna.Trial) -> float:
        params = {key: suggest(trial, key, p) for key, p in sweep.parameters.items()}
        folder = root / f"trial-{trial.number:03d}"
        trial.set_user_attr("folder", str(folder))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RESULT).unlink(missing_ok=True)
        log = folder / "fit.log"
        print(f"trial {trial.number}: {params} -> {folder} (log: {log})", flush=True)
        with log.open("w", encoding="utf-8") as out:
            code = subprocess.run(trial_command(spec, sweep, folder, params, url, trial.number),
                                  stdout=out, stderr=subprocess.STDOUT, check=False).returncode
        if code != 0 or not (folder / RESULT).is_file():
            tail = "".join(log.read_text(encoding="utf-8", errors="replace").splitlines(True)[-15:])
            raise TridentError(f"trial {trial.number} failed (exit code {code}); its log {log} ends:\n{tail}")
        result = json.loads((folder / RESULT).read_text(encoding="utf-8"))
        trial.set_user_attr("checkpoint", result["checkpoint"])
        if result["pruned"]:
            print(f"trial {trial.number}: pruned after validation epoch {result['epoch']}", flush=True)
            raise optuna.TrialPruned(f"pruned after validation epoch {result['epoch']}")
        if result["value"] is None:
            raise ConfigError(f"trial {trial.number} ({folder}) logged no {spec.monitor}; is validation run?")
        print(f"trial {trial.number}: {spec.monitor} = {result['value']:.6g}", flush=True)
        return float(result["value"])

    finished = (states.COMPLETE, states.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    remaining = (ns.n_trials or sweep.n_trials) - done
    os.environ.setdefault("WANDB_RUN_GROUP", f"sweep-{sweep.name}")  # every trial's W&B run in one group
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, catch=(TridentError,))
    if any(t.state == states.COMPLETE for t in study.trials):
        best = study.best_trial
        summary = json.dumps({"best_trial": best.number, spec.monitor: best.value, "params": best.params,
                              "folder": best.user_attrs.get("folder"),
                              "checkpoint": best.user_attrs.get("checkpoint"), "study": str(root / "study.db")},
                             indent=2)
        write_text_atomic(root / "best.json", summary + "\n")
        print(summary)
    return study
