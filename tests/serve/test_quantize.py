"""``export --quantize int8``: the int8 artifact is held to its agreement contract with the float one (nlp:
intents, audio: WER points), the report lands in metadata.json, and a missed contract leaves nothing behind."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
from serve_fixtures import LABELS, audio_artifact, nlp_artifact

from trident_audio.cli import DOMAIN as AUDIO
from trident_audio.export import infer as audio_infer
from trident_audio.export import quantize_check as audio_check
from trident_core.commands import export_main
from trident_core.errors import ConfigError, ExportError
from trident_core.quantize import quantize_artifact
from trident_nlp.cli import DOMAIN as NLP
from trident_nlp.export import infer as nlp_infer
from trident_nlp.export import quantize_check as nlp_check
from trident_vision.cli import DOMAIN as VISION

TEXTS = ["i want my money back", "where is my package", "reset my password", "tell me a joke", "refund",
         "track my order please right now", "hi", "when will my parcel arrive at the door", "money back now",
         "my password does not work", "where is the parcel", "a joke please"]


@pytest.fixture(scope="module")
def nlp_float(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return nlp_artifact(tmp_path_factory.mktemp("nlp") / "artifact", TEXTS, [LABELS[i % 4] for i in range(len(TEXTS))])


def _validation(folder: Path) -> Path:
    path = folder / "validation.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": LABELS[i % 4]}) + "\n" for i, t in enumerate(TEXTS)))
    return path


def _ops(artifact: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(artifact / "model.onnx")).graph.node}


def test_nlp_int8_meets_its_contract_and_records_it(nlp_float: Path, tmp_path: Path) -> None:
    validation = _validation(tmp_path)
    result = quantize_artifact(nlp_float, tmp_path / "int8", nlp_check, str(validation))
    report = json.loads((tmp_path / "int8" / "metadata.json").read_text())["quantization"]
    assert report == result.metadata["quantization"]
    assert report["mode"] == "int8" and report["passed"] and report["examples"] == len(TEXTS)
    assert report["agreement"] >= 0.99 and report["difference"] == pytest.approx(1 - report["agreement"])
    assert report["tolerance"] == 0.01 and 0 <= report["int8_accuracy"] <= 1
    assert "MatMulInteger" in _ops(tmp_path / "int8") and "MatMulInteger" not in _ops(nlp_float)
    rows = nlp_infer(str(tmp_path / "int8"), str(validation))  # the int8 artifact runs like any other
    assert [r["intent"] for r in rows] == [r["intent"] for r in nlp_infer(str(nlp_float), str(validation))]


def test_a_missed_contract_leaves_nothing_behind(nlp_float: Path, tmp_path: Path) -> None:
    """Control: an impossible tolerance (below any difference) must fail the export, with no folder written."""
    validation = _validation(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ExportError, match=r"misses the contract .* intent disagreement difference 0 > tolerance -1"):
        quantize_artifact(nlp_float, tmp_path / "int8", nlp_check, str(validation), tolerance=-1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary folder
    assert not (tmp_path / "int8").exists()


def _clip(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.8 * 16000)) / 16000
    wave = 0.2 * np.sin(2 * np.pi * (200 + 90 * seed) * t) + 0.05 * rng.standard_normal(len(t))
    buffer = io.BytesIO()
    sf.write(buffer, wave.astype(np.float32), 16000, format="WAV")
    return buffer.getvalue()


def test_audio_int8_reports_wer_points(tmp_path: Path) -> None:
    floating = audio_artifact(tmp_path / "float")
    lines = []
    for i in range(4):
        (tmp_path / f"{i}.wav").write_bytes(_clip(i))
        lines.append(json.dumps({"audio_filepath": f"{i}.wav", "text": "call me back"}))
    manifest = tmp_path / "validation.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    # an untrained model's WER is noise; the check is that both WERs are measured and the rule applied to them
    quantize_artifact(floating, tmp_path / "int8", audio_check, str(manifest), tolerance=1000.0)
    report = json.loads((tmp_path / "int8" / "metadata.json").read_text())["quantization"]
    assert report["metric"] == "WER points" and report["examples"] == 4 and report["passed"]
    assert report["difference"] == pytest.approx(report["int8_wer"] - report["float_wer"])
    assert report["float_wer"] >= 0 and report["tolerance"] == 1000.0
    assert len(audio_infer(str(tmp_path / "int8"), str(manifest))) == 4


@pytest.mark.parametrize(("spec", "args", "message"), [
    (VISION, ["--quantize", "int8", "--validation", "v"], "--quantize is not supported for vision"),
    (NLP, ["--quantize", "int8"], "--quantize int8 needs --validation PATH"),
    (AUDIO, ["--quantize", "int8", "--validation", "v", "--quantize_tolerance", "-1"], "must be >= 0"),
    (NLP, ["--validation", "v"], "only apply with --quantize int8"),
])
def test_export_refuses_bad_quantize_options(spec, args: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        export_main(spec, ["--ckpt_path", "missing.ckpt", *args])
