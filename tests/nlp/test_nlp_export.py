"""Export parity and artifact-based inference (onnxruntime, no torch at serving time)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from nlp_fixtures import (
    one_thread,  # noqa: F401 (fixture)
    tiny_module,
)

from trident_core.errors import ArtifactError, DataError
from trident_core.export import export_artifact
from trident_nlp.export import IntentClassifier, infer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    module = tiny_module()
    module.oos_threshold.fill_(0.2)
    result = export_artifact(module.export_spec(), tmp_path_factory.mktemp("nlp") / "artifact", domain="nlp")
    assert result.parity["onnx"]["max_abs_diff"] < 1e-4
    assert result.parity["torch_export"]["max_abs_diff"] < 1e-4
    return result.path


def test_artifact_is_self_contained(artifact: Path) -> None:
    meta = json.loads((artifact / "metadata.json").read_text())
    domain = meta["domain_metadata"]
    assert domain["labels"] == ["oos", "password", "refund", "track"]
    assert domain["threshold"] == pytest.approx(0.2) and domain["oos_label"] == "oos"
    assert (artifact / "tokenizer.json").is_file() and (artifact / "model.onnx").is_file()
    assert meta["inputs"][0]["shape"] == ["batch", "sequence"]


def test_onnx_matches_torch_on_new_shapes(artifact: Path) -> None:
    classifier = IntentClassifier.from_artifact(artifact)
    texts = ["reset my password right now please", "hi", "where is my parcel", "a b c d e f g h i j k l"]
    logits = classifier.logits(texts)
    module = tiny_module()
    from safetensors.torch import load_model

    load_model(module.net, str(artifact / "weights.safetensors"))
    ids, mask = classifier.encoder.pad(classifier.encoder.encode(texts))
    with torch.no_grad():
        want = module.net.eval()(torch.tensor(ids), torch.tensor(mask)).numpy()
    assert np.abs(logits - want).max() < 1e-4


def test_predict_applies_the_stored_threshold(artifact: Path) -> None:
    classifier = IntentClassifier.from_artifact(artifact)
    texts = [f"text number {i}" for i in range(7)] + ["refund my order"]
    rows = classifier.predict(texts, batch_size=3)
    assert [r["text"] for r in rows] == texts
    for row in rows:
        assert set(row) == {"text", "intent", "confidence", "in_scope"}
        assert row["in_scope"] == (row["intent"] != "oos")
    batched = classifier.predict(texts, batch_size=100)
    assert [r["intent"] for r in rows] == [r["intent"] for r in batched]
    classifier.threshold = 1.01  # nothing is that confident: everything is out of scope
    assert all(not r["in_scope"] and r["intent"] == "oos" for r in classifier.predict(texts))
    classifier.threshold = None
    probs = classifier.logits(texts)
    assert [r["intent"] for r in classifier.predict(texts)] == [classifier.labels[i] for i in probs.argmax(-1)]


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


def test_not_an_intent_artifact(artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError):
        IntentClassifier.from_artifact(tmp_path / "missing")
    meta = json.loads((artifact / "metadata.json").read_text())
    del meta["domain_metadata"]["labels"]
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("model.onnx", "model.pt2", "weights.safetensors"):
        (broken / name).write_bytes((artifact / name).read_bytes())
    (broken / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="lacks"):
        IntentClassifier.from_artifact(broken)
