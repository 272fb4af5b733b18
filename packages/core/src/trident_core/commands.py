"""Trident's own subcommands, ``export`` and ``infer`` (argparse: no LightningCLI parser to build), and the
``--ckpt_path best|last|PATH`` rule they share with ``fit``, ``validate``, ``test`` and ``predict``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trident_core.domain import DomainSpec, load_object
from trident_core.errors import CheckpointError, ConfigError
from trident_core.export import export_checkpoint, load_checkpoint


def checkpoint_folder(root: str | Path, dirpath: str | Path | None = None) -> Path:
    """The run's checkpoint folder: ``dirpath`` when set, else ``<root>/checkpoints``."""
    return Path(dirpath) if dirpath else Path(root) / "checkpoints"


def resolve_checkpoint(ckpt: str, dirpath: Path) -> Path:
    """``last`` and ``best`` name checkpoints of this run's folder ``dirpath``; anything else is a path.

    ``best`` is the best checkpoint that ``last.ckpt`` records (its weights are mapped, not read), looked up in
    ``dirpath`` by name first."""
    if ckpt == "last":
        path = dirpath / "last.ckpt"
        if not path.is_file():
            raise CheckpointError(f"{path}: no last checkpoint to resume from; run `fit` without --ckpt_path first")
        return path
    if ckpt == "best":
        last = resolve_checkpoint("last", dirpath)
        states = load_checkpoint(last, mmap=True).get("callbacks", {})
        for key, state in states.items():
            best = state.get("best_model_path") if key.startswith("ModelCheckpoint") else None
            if not best or Path(best).name == "last.ckpt":
                continue
            # the recorded path may be relative to another working folder, or the run folder was moved: the
            # file of that name in this run's folder comes first
            for path in (dirpath / Path(best).name, Path(best)):
                if path.is_file():
                    return path
        raise CheckpointError(f"{dirpath}: no best checkpoint recorded; pass --ckpt_path PATH")
    path = Path(ckpt)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    return path


def export_main(spec: DomainSpec, args: list[str]) -> None:
    """``trident-<domain> export``: a checkpoint (``best``, ``last`` or a path) to an artifact folder."""
    parser = argparse.ArgumentParser(
        prog=f"trident-{spec.name} export",
        description="Turn a checkpoint into a self-contained artifact folder. `best` and `last` name checkpoints "
        "of the run folder, as for `test --ckpt_path`.",
    )
    parser.add_argument("--ckpt_path", required=True,
                        help="best | last (of the run folder's checkpoints/) | PATH of a checkpoint written by `fit`")
    parser.add_argument("--trainer.default_root_dir", dest="root", default=None,
                        help=f"the run folder, as for fit and test (default: the configs', else runs/{spec.name})")
    parser.add_argument("--last_checkpoint.dirpath", dest="dirpath", default=None,
                        help="the folder of last.ckpt, as for fit and test (default: <root>/checkpoints)")
    parser.add_argument("--config", "-c", action="append", default=[],
                        help="configs as given to fit (NAME or PATH, repeatable); only the run folder is read")
    parser.add_argument("--output", default=None,
                        help="artifact folder to write, replaced atomically (default: <root>/artifact)")
    parser.add_argument("--quantize", choices=["int8"], default=None,
                        help="write an int8 artifact (onnxruntime dynamic quantization) that must agree with the "
                        "float one on --validation within the domain's tolerance, else nothing is written")
    parser.add_argument("--validation", default=None,
                        help="with --quantize: the validation input in infer's format, with references (nlp: "
                        "JSONL with text and label; audio: a manifest with text)")
    parser.add_argument("--quantize_tolerance", type=float, default=None,
                        help="with --quantize: the largest allowed difference (default: the domain's; nlp 0.01 of "
                        "intents differing, audio 0.5 WER points)")
    ns = parser.parse_args(args)
    if ns.quantize is None and (ns.validation is not None or ns.quantize_tolerance is not None):
        raise ConfigError("--validation and --quantize_tolerance only apply with --quantize int8")
    if ns.quantize is not None:
        if not spec.quantize_check:
            raise ConfigError(f"trident-{spec.name} export: --quantize is not supported for {spec.name}. "
                              f"{spec.quantize_refusal}")
        if ns.validation is None:
            raise ConfigError("--quantize int8 needs --validation PATH: the int8 artifact is checked against the "
                              "float one on it (nlp: JSONL with text and label; audio: a manifest with text)")
        if ns.quantize_tolerance is not None and ns.quantize_tolerance < 0:
            raise ConfigError(f"--quantize_tolerance must be >= 0, got {ns.quantize_tolerance}")
    root, dirpath = _run_folder(spec, ns.config)
    root = ns.root or root or f"runs/{spec.name}"
    ckpt = resolve_checkpoint(ns.ckpt_path, checkpoint_folder(root, ns.dirpath or dirpath))
    output = ns.output or str(Path(root) / ("artifact-int8" if ns.quantize else "artifact"))
    module_class = load_object(spec.module_class)
    if ns.quantize is not None:
        from trident_core.quantize import export_quantized

        result = export_quantized(ckpt, output, module_class, load_object(spec.quantize_check), ns.validation,
                                  domain=spec.name, tolerance=ns.quantize_tolerance, mode=ns.quantize)
    else:
        result = export_checkpoint(ckpt, output, module_class, domain=spec.name)
    summary = {"artifact": str(result.path), "checkpoint": str(ckpt), "parity": result.parity}
    if "quantization" in result.metadata:
        summary["quantization"] = result.metadata["quantization"]
    print(json.dumps(summary, indent=2))


def _run_folder(spec: DomainSpec, configs: list[str]) -> tuple[str | None, str | None]:
    """``trainer.default_root_dir`` and ``last_checkpoint.dirpath`` as the domain's default.yaml and ``configs``
    (layered in order, like fit's) set them."""
    import yaml

    root = dirpath = None
    for name in [str(spec.config_path("default")), *configs]:
        path = Path(name) if Path(name).is_file() else spec.config_path(name)
        if not path.is_file():
            raise ConfigError(f"--config {name}: no such file or config of trident-{spec.name}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        root = ((data.get("trainer") or {}).get("default_root_dir")) or root
        dirpath = ((data.get("last_checkpoint") or {}).get("dirpath")) or dirpath
    return root, dirpath


def infer_main(spec: DomainSpec, args: list[str]) -> None:
    """``trident-<domain> infer``: an artifact run on input files (the domain's ``infer``)."""
    parser = argparse.ArgumentParser(
        prog=f"trident-{spec.name} infer", description="Run an exported artifact (onnxruntime) on input files."
    )
    parser.add_argument("--artifact", required=True, help="artifact folder written by `export`")
    parser.add_argument("--input", required=True, help="input file, folder, manifest, or - for stdin")
    parser.add_argument("--output", default=None, help="where to write results (default: JSONL on stdout)")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="inputs per onnxruntime call (default: the domain's own)")
    if spec.infer_options:  # the domain's own options (see DomainSpec.infer_options); unknown ones exit 2
        load_object(spec.infer_options)(parser.add_argument_group(f"{spec.name} options (default: as the artifact "
                                                                  "stored them)"))
    ns = parser.parse_args(args)
    if ns.batch_size is not None and ns.batch_size < 1:
        raise ConfigError(f"--batch_size must be >= 1, got {ns.batch_size}")
    infer = load_object(spec.infer)
    core = {"artifact", "input", "output"}
    kwargs = {key: value for key, value in vars(ns).items() if key not in core and value is not None}
    rows = infer(ns.artifact, ns.input, ns.output, **kwargs)  # the domain writes --output itself
    if ns.output is None:
        for row in rows or []:
            print(json.dumps(row, ensure_ascii=False))
