"""``export --quantize int8``: an int8 artifact held to an accuracy contract instead of the 1e-4 parity.

The checkpoint is exported as usual (float graph, parity-checked against eager PyTorch), the ONNX graph is
quantized with onnxruntime's dynamic quantization (int8 weights, activations quantized per call; ``MatMul`` and
``Gemm`` only, where the integer kernels are fast), and both artifacts run the domain's ``infer`` on a validation
set given by the user. The domain reports how much worse the int8 artifact is in its own unit (nlp: the fraction
of intents that differ, audio: WER points, vision: Dice) against its tolerance; the report lands in
``metadata.json`` under ``quantization``. When the difference is over the tolerance, export fails and the output
folder is left as it was (absent, or the previous artifact): everything is assembled in a temporary sibling.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trident_core.errors import ExportError
from trident_core.export import ExportResult, _replace_dir, export_checkpoint, staging_folder

log = logging.getLogger(__name__)
QUANTIZE_MODES = ("int8",)
QUANTIZED_OPS = ["MatMul", "Gemm"]

# (float artifact, int8 artifact, validation input) -> {"metric", "difference", "tolerance", ...}: the domain's
# ``quantize_check`` (see DomainSpec); "difference" is how much worse int8 is, in the unit of "tolerance"
AgreementCheck = Callable[[str, str, str], dict[str, Any]]


def quantize_onnx(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of the ``MatMul``/``Gemm`` weights of an ONNX graph (onnxruntime)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime's quantizer warns on the root logger; restored below
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=QUANTIZED_OPS)
    except Exception as err:  # onnxruntime raises untyped errors on graphs it cannot quantize
        raise ExportError(f"onnxruntime dynamic quantization failed on {source.name}: {err}") from err
    finally:
        root.setLevel(level)


def export_quantized(
    ckpt_path: str | Path, output_dir: str | Path, module_class: type, check: AgreementCheck, validation: str, *,
    domain: str = "", tolerance: float | None = None, mode: str = "int8",
) -> ExportResult:
    """Export a checkpoint (float, parity-checked) and write its int8 artifact with :func:`quantize_artifact`;
    the float artifact is only a temporary step."""
    output = Path(output_dir)
    work = staging_folder(output, f".{output.name}.float.")
    try:
        floating = export_checkpoint(ckpt_path, work / "float", module_class, domain=domain)
        return quantize_artifact(floating.path, output, check, validation, tolerance=tolerance, mode=mode)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def quantize_artifact(
    float_artifact: str | Path, output_dir: str | Path, check: AgreementCheck, validation: str, *,
    tolerance: float | None = None, mode: str = "int8",
) -> ExportResult:
    """Write the int8 version of a float artifact when it meets the domain's agreement contract on ``validation``.

    Args:
        float_artifact: A float artifact folder written by ``export``.
        output_dir: The int8 artifact folder; written only when the contract holds.
        check: The domain's agreement check (``DomainSpec.quantize_check``).
        validation: The validation input in the domain's ``infer`` format, with references (labels or texts).
        tolerance: Overrides the domain's tolerance (the largest allowed difference).
        mode: Only ``"int8"``.

    Raises:
        ExportError: when the contract does not hold (naming the metric, the difference and the tolerance), or
            quantization fails; nothing is left behind.
    """
    from trident_core.artifact import read_metadata

    if mode not in QUANTIZE_MODES:
        raise ExportError(f"--quantize must be one of {QUANTIZE_MODES}, got {mode!r}")
    source, output = Path(float_artifact), Path(output_dir)
    metadata = read_metadata(source)
    if "quantization" in metadata:
        raise ExportError(f"{source}: already quantized; quantize the float artifact")
    work = staging_folder(output, f".{output.name}.int8.")
    try:
        int8 = work / "artifact"
        shutil.copytree(source, int8)
        onnx = metadata["files"]["onnx"]
        quantize_onnx(source / onnx, int8 / onnx)
        report = dict(check(str(source), str(int8), validation))
        if tolerance is not None:
            report["tolerance"] = float(tolerance)
        report["passed"] = bool(report["difference"] <= report["tolerance"])
        if not report["passed"]:
            raise ExportError(
                f"--quantize {mode}: the int8 artifact misses the contract on {validation}: {report['metric']} "
                f"difference {report['difference']:.4g} > tolerance {report['tolerance']:.4g} ({_figures(report)}); "
                "nothing was written. Export without --quantize, or check the validation set"
            )
        metadata["quantization"] = {"mode": mode, "method": "onnxruntime dynamic quantization (int8 weights, "
                                    f"{'/'.join(QUANTIZED_OPS)}); parity is the float graph's",
                                    "validation": str(validation), **report}
        (int8 / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str) + "\n", encoding="utf-8")
        _replace_dir(int8, output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("wrote %s (int8, %s difference %.4g)", output, report["metric"], report["difference"])
    return ExportResult(path=output, parity=metadata.get("parity", {}), metadata=metadata)


def _figures(report: dict[str, Any]) -> str:
    skip = {"metric", "difference", "tolerance", "passed"}
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in report.items() if k not in skip)
