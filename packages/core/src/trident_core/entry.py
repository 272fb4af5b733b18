"""Domain entry points (``trident-nlp``, ``trident nlp``, ...): the top-level ``--help`` without torch or Lightning.

LightningCLI builds its parser from the domain's classes, which imports Lightning, torch and everything they pull in
(about 12 s cold on 2 cores, see benchmarks P6). The top-level help only needs what a domain declares in its
:class:`~trident_core.domain.DomainSpec`, its config folder and the preset folder, so it is answered here from those.
Everything else, subcommand help included (``trident-nlp fit --help``), goes to :func:`trident_core.cli.run_domain`.
"""

from __future__ import annotations

import sys

from trident_core.domain import DomainSpec
from trident_core.presets import presets

# LightningCLI's subcommands, then Trident's own (tests check these against LightningCLI.subcommands()).
SUBCOMMANDS = {
    "fit": "train and validate; resume an interrupted run with --ckpt_path last",
    "validate": "one evaluation pass over the validation set (--ckpt_path best|last|PATH)",
    "test": "one evaluation pass over the test set (--ckpt_path best|last|PATH)",
    "predict": "run the model on the predict set of the data",
    "export": "turn a checkpoint into a self-contained ONNX artifact folder (--ckpt_path best|last|PATH)",
    "infer": "run an exported artifact with onnxruntime on files (--artifact DIR --input PATH)",
    "sweep": "hyperparameter search on Optuna, each trial a fit in its own folder (--config SWEEP.yaml)",
}
HELP_FLAGS = (["-h"], ["--help"])


def top_level_help(spec: DomainSpec) -> str:
    """What ``trident-<domain> --help`` prints."""
    prog = f"trident-{spec.name}"
    width = max(len(name) for name in SUBCOMMANDS) + 2
    configs = sorted(p.stem for p in spec.config_dir().glob("*.yaml"))
    lines = [
        f"usage: {prog} {{{','.join(SUBCOMMANDS)}}} [--config NAME|PATH] [--preset NAME] [options]",
        "",
        f"{prog}: {spec.description}" if spec.description else prog,
        "",
        "subcommands:",
        *(f"  {name:<{width}}{text}" for name, text in SUBCOMMANDS.items()),
        "",
        "options of fit, validate, test and predict (LightningCLI):",
        f"  --config NAME|PATH   one of this domain's configs or a YAML file; repeat to layer ({', '.join(configs)})",
        f"  --preset NAME        hardware and precision settings; repeatable ({', '.join(presets())})",
        "  --bf16_if_native B   without --trainer.precision: bf16-mixed where the hardware computes bf16 natively,",
        "                       else 32-true (true in the nlp and vision default configs)",
        "  --print_config       print the resolved configuration and exit",
        "  --section.key VALUE  any value of the config, e.g. --trainer.max_epochs 3 --data.batch_size 16",
        "  --trainer.callbacks+=CLASS  add a callback to the defaults (a list replaces them; ProgressOnException",
        "                       and RngState are always added, for safety)",
        "",
        f"Every option of a subcommand: {prog} SUBCOMMAND --help (fit, validate, test and predict build it from the",
        "model, data and trainer classes: about 10 s on 2 cores, the cost of importing torch and Lightning).",
        f"Example: {prog} fit --config debug --trainer.max_epochs 1",
    ]
    return "\n".join(lines)


def main(spec: DomainSpec, args: list[str] | None = None) -> None:
    """Run a domain's command line: the top-level help here, everything else through ``TridentCLI``."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv in HELP_FLAGS:
        print(top_level_help(spec))
        raise SystemExit(0)  # as argparse's --help does
    from trident_core.cli import run_domain

    run_domain(spec, argv)
