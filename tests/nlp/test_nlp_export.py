"""Export parity and artifact-based inference (onnxruntime, no torch at serving time)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from nlp_fixtures import (
    one_thread,  # noqa: F401 (fixture)
    tiny_module,
)

from trident_core.errors import ArtifactError, DataError
from trident_core.export import export_artifact
from trident_nlp.export import IntentMetadata, IntentPredictor, infer, prediction_rows

pytestmark = pytest.mark.usefixtures("one_thread")
THRESHOLD = 0.5  # exact in float32 (the checkpoint's buffer) and float64 (metadata.json)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    module = tiny_module()
    module.oos_threshold.fill_(THRESHOLD)
    result = export_artifact(module.export_spec(), tmp_path_factory.mktemp("nlp") / "artifact", domain="nlp")
    assert result.parity["onnx"]["max_abs_diff"] < 1e-4
    assert result.parity["torch_export"]["max_abs_diff"] < 1e-4
    return result.path


def test_artifact_is_self_contained(artifact: Path) -> None:
    meta = json.loads((artifact / "metadata.json").read_text())
    domain = meta["domain_metadata"]
    assert domain["labels"] == ["oos", "password", "refund", "track"]
    assert domain["threshold"] == THRESHOLD and domain["oos_label"] == "oos"
    assert (artifact / "tokenizer.json").is_file() and (artifact / "model.onnx").is_file()
    assert meta["inputs"][0]["shape"] == ["batch", "sequence"]


def test_onnx_matches_torch_on_new_shapes(artifact: Path) -> None:
    classifier = IntentPredictor.from_artifact(artifact)
    texts = ["reset my password right now please", "hi", "where is my parcel", "a b c d e f g h i j k l"]
    logits = classifier.logits(texts)
    module = tiny_module()
    from safetensors.torch import load_model

    load_model(module.net, str(artifact / "weights.safetensors"))
    ids, mask = classifier.encoder.pad(classifier.encoder.encode(texts))
    with torch.no_grad():
        want = module.net.eval()(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    assert np.abs(logits - want).max() < 1e-4


def test_predict_applies_the_stored_threshold(artifact: Path) -> None:
    classifier = IntentPredictor.from_artifact(artifact)
    texts = [f"text number {i}" for i in range(7)] + ["refund my order"]
    rows = classifier.predict(texts, batch_size=3)
    assert [r["text"] for r in rows] == texts
    for row in rows:
        assert set(row) == {"text", "intent", "confidence", "in_scope"}
        assert row["in_scope"] == (row["intent"] != "oos")
    batched = classifier.predict(texts, batch_size=100)
    assert [r["intent"] for r in rows] == [r["intent"] for r in batched]
    strict = classifier.with_threshold(1.01)  # nothing is that confident: everything is out of scope
    assert all(not r["in_scope"] and r["intent"] == "oos" for r in strict.predict(texts))
    lenient = classifier.with_threshold(None)
    logits = lenient.logits(texts)
    labels = classifier.metadata.labels
    assert [r["intent"] for r in lenient.predict(texts)] == [labels[i] for i in logits.argmax(-1)]


def test_test_step_and_artifact_decide_identically_on_the_same_logits(artifact: Path) -> None:
    """One rule: the module (test/predict steps) and the artifact runner give the same decisions."""
    module = tiny_module()  # labels oos, password, refund, track
    module.oos_threshold.fill_(THRESHOLD)
    predictor = IntentPredictor.from_artifact(artifact)
    logits = np.array([
        [-1e4, 0.0, 0.0, -1e4],  # max_prob exactly 0.5 == threshold, argmax "password": in scope
        [0.0, 0.1, 0.0, 0.0],  # max_prob 0.26 < threshold: rejected
        [5.0, 0.0, 0.0, 0.0],  # argmax is the oos class, confidently: out of scope
        [0.0, 0.0, 0.0, 0.0],  # a tie resolved to the oos class, below the threshold too
        [0.0, 0.0, 6.0, 0.0],  # confidently "refund"
    ])
    ours = module.decide(torch.from_numpy(logits).float())
    theirs = predictor.decide(logits.astype(np.float32))  # onnxruntime hands out float32
    assert ours.in_scope.tolist() == theirs.in_scope.tolist() == [True, False, False, False, True]
    assert ours.index.tolist() == theirs.index.tolist() == [1, 0, 0, 0, 2]
    assert np.array_equal(ours.score, theirs.score) and ours.score[0] == THRESHOLD
    rows = prediction_rows(theirs, predictor.metadata.labels, predictor.metadata.oos_label)
    assert [r["intent"] for r in rows] == ["password", "oos", "oos", "oos", "refund"]


def test_infer_reads_lines_and_jsonl_and_writes_jsonl(artifact: Path, tmp_path: Path) -> None:
    lines = tmp_path / "in.txt"
    lines.write_text("where is my package\n\nforgot password\n")
    out = tmp_path / "out"
    out.mkdir()
    rows = infer(str(artifact), str(lines), str(out), batch_size=2)
    written = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert written == rows and [r["text"] for r in rows] == ["where is my package", "forgot password"]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"text": "refund please", "id": 1}\n')
    assert infer(str(artifact), str(jsonl))[0]["text"] == "refund please"
    jsonl.write_text('{"id": 1}\n')
    with pytest.raises(DataError, match=r"in\.jsonl:1"):
        infer(str(artifact), str(jsonl))


def _copy_with_metadata(artifact: Path, folder: Path, edit: Callable[[dict], Any]) -> Path:
    meta = json.loads((artifact / "metadata.json").read_text())
    edit(meta["domain_metadata"])
    folder.mkdir()
    for name in ("model.onnx", "model.pt2", "weights.safetensors", "tokenizer.json"):
        (folder / name).write_bytes((artifact / name).read_bytes())
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


def test_metadata_with_a_missing_or_unknown_key_is_a_clear_error(artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError):
        IntentPredictor.from_artifact(tmp_path / "missing")
    missing = _copy_with_metadata(artifact, tmp_path / "missing_labels", lambda m: m.pop("labels"))
    with pytest.raises(ArtifactError, match=r"missing_labels/metadata.json: \[domain_metadata\] missing \['labels'\]"):
        IntentPredictor.from_artifact(missing)
    unknown = _copy_with_metadata(artifact, tmp_path / "unknown", lambda m: m.update(pad_id=0))
    with pytest.raises(ArtifactError, match=r"unknown \['pad_id'\] key\(s\) for IntentMetadata.*re-export"):
        IntentPredictor.from_artifact(unknown)
    other = _copy_with_metadata(artifact, tmp_path / "other", lambda m: m.update(task="segmentation"))
    with pytest.raises(ArtifactError, match="'segmentation', this reader takes 'intent_classification'"):
        IntentPredictor.from_artifact(other)
    score = _copy_with_metadata(artifact, tmp_path / "score", lambda m: m.update(score="entropy"))
    with pytest.raises(ArtifactError, match=r"score\] is 'entropy'"):
        IntentPredictor.from_artifact(score)


def test_metadata_is_written_and_read_by_one_dataclass(artifact: Path) -> None:
    written = json.loads((artifact / "metadata.json").read_text())["domain_metadata"]
    read = IntentPredictor.from_artifact(artifact).metadata
    assert read == IntentMetadata.from_dict(written) and read.to_dict() == written
    assert set(written) == {"task", "labels", "oos_label", "score", "threshold", "max_length", "tokenizer", "backbone",
                            "operating_point", "oos_stats"}
    # an artifact written before the operating point and the mahalanobis score still reads (their defaults)
    old = {k: v for k, v in written.items() if k not in ("operating_point", "oos_stats")}
    assert IntentMetadata.from_dict(old).operating_point == "balanced"


def test_serving_imports_neither_torch_nor_lightning(artifact: Path) -> None:
    code = ("import sys\nfrom trident_nlp.export import IntentPredictor\n"
            f"rows = IntentPredictor.from_artifact({str(artifact)!r}).predict(['where is my parcel'])\n"
            "print(rows[0]['intent'], [m for m in ('torch', 'lightning', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("[]"), out.stdout
