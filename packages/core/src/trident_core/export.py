"""The export contract shared by every domain: one self-contained artifact folder, checked for parity.

``model.onnx`` (dynamic axes), ``model.pt2`` (``torch.export``), ``weights.safetensors`` and
``metadata.json``. Export fails, and writes nothing, unless onnxruntime and the exported program match
eager PyTorch within the stated tolerance on every example input (at least two shapes).
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import inspect
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trident_core.artifact import FORMAT_VERSION
from trident_core.compile import eager
from trident_core.errors import CheckpointError, ExportError

log = logging.getLogger(__name__)
_VERSIONED = ("trident-core", "torch", "lightning", "onnx", "onnxruntime", "transformers", "monai", "torchaudio")


@dataclass
class ExportSpec:
    """What a domain exports and how the export is checked.

    Attributes:
        model: Eval-mode module; ``forward(*inputs)`` returns a tensor or a tuple of tensors.
        example_inputs: At least two example input tuples of different shapes; the first is traced.
        input_names: One name per input tensor.
        output_names: One name per output tensor.
        dynamic_axes: ``{input_or_output_name: {axis: symbolic_name}}``.
        metadata: Domain data for inference (preprocessing, labels, vocabulary, thresholds).
        files: Extra files for the artifact: name -> source path or bytes.
        atol: Largest allowed absolute difference to eager PyTorch.
        rtol: Relative tolerance added on top of ``atol`` (``atol + rtol * |eager|``).
    """

    model: nn.Module
    example_inputs: Sequence[tuple[torch.Tensor, ...]]
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    metadata: dict[str, Any]
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    atol: float = 1e-4
    rtol: float = 0.0


@dataclass
class ExportResult:
    """Where the artifact went and how close it came to eager PyTorch."""

    path: Path
    parity: dict[str, Any]
    metadata: dict[str, Any]


def _as_tuple(out: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(out, torch.Tensor):
        return (out,)
    if isinstance(out, (tuple, list)):
        return tuple(out)
    raise ExportError(f"the exported model must return a tensor or a tuple of tensors, got {type(out).__name__}")


def _dynamic_shapes(spec: ExportSpec) -> tuple[dict[int, Any], ...]:
    auto = torch.export.Dim.AUTO
    return tuple({axis: auto for axis in spec.dynamic_axes.get(name, {})} for name in spec.input_names)


def _export_program(spec: ExportSpec) -> torch.export.ExportedProgram:
    try:
        return torch.export.export(spec.model, spec.example_inputs[0], dynamic_shapes=_dynamic_shapes(spec))
    except Exception as err:
        raise ExportError(f"torch.export failed for {type(spec.model).__name__}: {err}") from err


def _export_onnx(spec: ExportSpec, program: torch.export.ExportedProgram, path: Path) -> str:
    """Write ONNX with the dynamo exporter from the exported program; fall back to the TorchScript exporter."""
    errors: list[str] = []
    # the registry warns once per missing optional library (torchvision ops); not actionable for users
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            onnx_program = torch.onnx.export(
                program, input_names=spec.input_names, output_names=spec.output_names, dynamo=True,
                verbose=False, optimize=True,
            )
            assert onnx_program is not None  # dynamo=True without a file returns the program
            onnx_program.save(str(path), external_data=False)
            return "dynamo"
        except Exception as err:
            errors.append(f"dynamo exporter: {err}")
        try:
            torch.onnx.export(
                spec.model, spec.example_inputs[0], str(path), input_names=spec.input_names,
                output_names=spec.output_names, dynamic_axes=spec.dynamic_axes, dynamo=False, opset_version=17,
            )
            return "torchscript"
        except Exception as err:
            errors.append(f"torchscript exporter: {err}")
    raise ExportError("ONNX export failed: " + " | ".join(errors))


def _max_diff(got: np.ndarray, want: np.ndarray, atol: float, rtol: float) -> tuple[float, bool]:
    if got.shape != want.shape:
        return float("inf"), False
    if want.dtype.kind in "iub":
        diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
        return float(diff.max(initial=0)), bool((diff == 0).all())
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    ok = bool(np.all(diff <= atol + rtol * np.abs(want.astype(np.float64))))
    return float(np.nan_to_num(diff, nan=np.inf).max(initial=0.0)), ok


def check_parity(spec: ExportSpec, onnx_path: Path, program: torch.export.ExportedProgram) -> dict[str, Any]:
    """Compare onnxruntime and the exported program against eager PyTorch on every example input.

    Raises:
        ExportError: naming the runtime, the input shape, the output and the difference, when any check fails.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    exported = program.module()
    report: dict[str, Any] = {"atol": spec.atol, "rtol": spec.rtol, "shapes": [], "onnx": {}, "torch_export": {}}
    worst = {"onnx": 0.0, "torch_export": 0.0}
    for inputs in spec.example_inputs:
        shapes = [list(t.shape) for t in inputs]
        report["shapes"].append(shapes)
        with torch.inference_mode():
            eager = [t.detach().cpu().numpy() for t in _as_tuple(spec.model(*inputs))]
        feeds = {n: t.detach().cpu().numpy() for n, t in zip(spec.input_names, inputs, strict=True)}
        runs: dict[str, list[np.ndarray]] = {}
        try:
            runs["onnx"] = list(session.run(spec.output_names, feeds))
        except Exception as err:
            raise ExportError(f"onnxruntime failed on input shapes {shapes}: {err}") from err
        try:
            with torch.inference_mode():
                runs["torch_export"] = [t.detach().cpu().numpy() for t in _as_tuple(exported(*inputs))]
        except Exception as err:
            raise ExportError(f"the torch.export program failed on input shapes {shapes}: {err}") from err
        for runtime, outputs in runs.items():
            for name, got, want in zip(spec.output_names, outputs, eager, strict=True):
                diff, ok = _max_diff(got, want, spec.atol, spec.rtol)
                worst[runtime] = max(worst[runtime], diff)
                if not ok:
                    raise ExportError(
                        f"parity check failed: {runtime} output {name!r} differs from eager PyTorch by {diff:.3g} "
                        f"(allowed {spec.atol:g} + {spec.rtol:g}*|x|) on input shapes {shapes} "
                        f"(got shape {list(got.shape)}, want {list(want.shape)})"
                    )
    for runtime, diff in worst.items():
        report[runtime] = {"max_abs_diff": diff, "passed": True}
    return report


def _io_spec(names: list[str], tensors: tuple[torch.Tensor, ...], axes: dict[str, dict[int, str]]) -> list[dict]:
    specs = []
    for name, t in zip(names, tensors, strict=True):
        shape: list[int | str] = list(t.shape)
        for axis, symbol in axes.get(name, {}).items():
            shape[axis] = symbol
        specs.append({"name": name, "dtype": str(t.dtype).removeprefix("torch."), "shape": shape})
    return specs


def _versions() -> dict[str, str]:
    found = {}
    for dist in _VERSIONED:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def export_artifact(
    spec: ExportSpec, output_dir: str | Path, *, metrics: dict[str, float] | None = None, domain: str = ""
) -> ExportResult:
    """Write a self-contained artifact folder for ``spec`` and check it against eager PyTorch.

    The folder is assembled in a temporary sibling and renamed into place only after every check passed,
    so a failed export leaves any previous artifact untouched and nothing half-written.

    Raises:
        ExportError: when export or a parity check fails, or the output folder cannot be written.
    """
    from safetensors.torch import save_model

    output = Path(output_dir)
    if len(spec.example_inputs) < 2:
        raise ExportError("ExportSpec.example_inputs needs at least two examples of different shapes")
    if len({tuple(tuple(t.shape) for t in x) for x in spec.example_inputs}) < 2:
        raise ExportError("ExportSpec.example_inputs must differ in shape, to prove the dynamic axes work")
    tmp = staging_folder(output, f".{output.name}.")
    model = spec.model.eval()
    # a network compiled for training (TaskModule's `compile`) is traced as the plain module it wraps
    with eager(model):
        try:
            with torch.no_grad():
                eager_out = _as_tuple(model(*spec.example_inputs[0]))
            if len(eager_out) != len(spec.output_names):
                raise ExportError(f"the model returns {len(eager_out)} outputs but {len(spec.output_names)} are named")
            program = _export_program(spec)
            torch.export.save(program, str(tmp / "model.pt2"))
            exporter = _export_onnx(spec, program, tmp / "model.onnx")
            save_model(model, str(tmp / "weights.safetensors"))
            parity = check_parity(spec, tmp / "model.onnx", program)
            parity["onnx_exporter"] = exporter
            for name, source in spec.files.items():
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(source, bytes):
                    target.write_bytes(source)
                else:
                    shutil.copyfile(source, target)
            metadata = {
                "format_version": FORMAT_VERSION,
                "domain": domain,
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "inputs": _io_spec(spec.input_names, spec.example_inputs[0], spec.dynamic_axes),
                "outputs": _io_spec(spec.output_names, eager_out, spec.dynamic_axes),
                "files": {"onnx": "model.onnx", "torch_export": "model.pt2", "weights": "weights.safetensors",
                          **{name: name for name in spec.files}},
                "domain_metadata": spec.metadata,
                "metrics": dict(metrics or {}),
                "versions": _versions(),
                "parity": parity,
            }
            (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str) + "\n", encoding="utf-8")
            _replace_dir(tmp, output)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("exported %s (onnx max diff %.2e)", output, parity["onnx"]["max_abs_diff"])
    return ExportResult(path=output, parity=parity, metadata=metadata)


def staging_folder(output: Path, prefix: str) -> Path:
    """A new temporary folder beside ``output``, where an artifact is assembled before it replaces ``output`` in
    one rename (so a failure leaves nothing half-written); an ExportError naming ``output`` when it cannot be made."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix, dir=output.parent))
    except OSError as err:
        raise ExportError(
            f"{output}: cannot write the artifact here ({err.strerror}); choose another --output"
        ) from None


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an existing ``target`` is replaced only once ``new`` is complete."""
    if target.exists():
        old = target.parent / f".{target.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        new.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(target)


def load_checkpoint(path: str | Path, *, mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: a checkpoint that would run code is refused.

    Args:
        path: The checkpoint file.
        mmap: Map the tensors instead of reading them (``torch.load(mmap=True)``): for a look at the small
            parts (hyperparameters, the ``trident`` key, callback states) without reading the weights.

    Raises:
        CheckpointError: when the file is missing, unreadable, not a plain-data checkpoint, or of another
            Trident checkpoint version.
    """
    ckpt = Path(path)
    if not ckpt.is_file():
        raise CheckpointError(f"{ckpt}: checkpoint not found")
    try:
        data = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:
        # some errors (EOFError on an empty or truncated file) carry no message at all
        reason = (str(err).splitlines() or [""])[0] or f"{type(err).__name__} (empty or truncated file)"
        raise CheckpointError(
            f"{ckpt}: refused by the safe loader (weights_only=True): {reason}. "
            "Only load checkpoints you trust; Trident never unpickles arbitrary objects."
        ) from None
    if not isinstance(data, dict) or "state_dict" not in data:
        raise CheckpointError(f"{ckpt}: not a Lightning checkpoint (no 'state_dict')")
    from trident_core.module import check_checkpoint_version

    check_checkpoint_version(data, str(ckpt))
    return data


# the one instantiator LightningCLI records in `hyper_parameters`; a checkpoint naming another is refused, since
# rebuilding would import and call whatever it names
_CLI_INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"


def module_from_checkpoint(
    checkpoint: dict[str, Any], module_class: type[Any], source: str | Path = "checkpoint"
) -> Any:
    """Rebuild a module from an already loaded checkpoint (see :func:`load_checkpoint`): what Lightning's
    ``load_from_checkpoint`` does, without reading the file a second time.

    The hyperparameters are the module's config as ``fit`` received it; configs written by LightningCLI
    (``class_path`` of the net, optimizer, scheduler) are instantiated by LightningCLI's own ``instantiate_module``.

    Raises:
        CheckpointError: when the module cannot be rebuilt from this checkpoint.
    """
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    instantiator = hparams.pop("_instantiator", None)
    params = inspect.signature(module_class.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        hparams = {k: v for k, v in hparams.items() if k in params or k == "_class_path"}
    try:
        if instantiator not in (None, _CLI_INSTANTIATOR):
            raise CheckpointError(f"{source}: unknown hyper_parameters._instantiator {instantiator!r}; Trident "
                                  f"only rebuilds modules with {_CLI_INSTANTIATOR}")
        if instantiator is None:
            module = module_class(**hparams)
        else:
            from lightning.pytorch.cli import instantiate_module

            module = instantiate_module(module_class, hparams)
        module.on_load_checkpoint(checkpoint)
        module.load_state_dict(checkpoint["state_dict"])
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(
            f"{source}: cannot rebuild {module_class.__name__} from this checkpoint ({err}). It must come from "
            "this domain's `fit`."
        ) from err
    return module.eval()


def export_checkpoint(
    ckpt_path: str | Path, output_dir: str | Path, module_class: type, *, domain: str = ""
) -> ExportResult:
    """Rebuild a module from a checkpoint's hyperparameters and export it (the CLI ``export`` subcommand). The
    checkpoint is read once: weights, hyperparameters and the metrics written into the artifact."""
    ckpt = load_checkpoint(ckpt_path)
    module = module_from_checkpoint(ckpt, module_class, source=ckpt_path)
    metrics = ckpt.get("trident", {}).get("metrics", {})
    return export_artifact(module.export_spec(), output_dir, metrics=metrics, domain=domain)
