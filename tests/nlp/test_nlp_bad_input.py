"""Malformed inputs: every one raises a TridentError naming the file and the line or key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nlp_fixtures import records, write_jsonl, write_splits

from trident_core.errors import ConfigError, DataError, TridentError
from trident_nlp.data import MAX_TEXT_CHARS, IntentDataModule, read_records, read_texts

GOOD = '{"text": "where is my order", "label": "track"}\n'

# name -> (file name, bytes, expected line or None, expected key or None)
CASES: dict[str, tuple[str, bytes, int | None, str | None]] = {
    "empty_jsonl": ("e.jsonl", b"", None, None),
    "blank_lines_only": ("b.jsonl", b"\n\n  \n", None, None),
    "truncated_json": ("t.jsonl", (GOOD + '{"text": "refund me", "lab').encode(), 2, None),
    "json_array_line": ("a.jsonl", (GOOD + '["text", "label"]\n').encode(), 2, None),
    "json_scalar_line": ("s.jsonl", (GOOD + "42\n").encode(), 2, None),
    "missing_text_key": ("m.jsonl", (GOOD + '{"label": "x"}\n').encode(), 2, "text"),
    "missing_label_key": ("l.jsonl", (GOOD * 2 + '{"text": "hi"}\n').encode(), 3, "label"),
    "empty_text": ("et.jsonl", (GOOD + '{"text": "   ", "label": "x"}\n').encode(), 2, "text"),
    "text_is_number": ("tn.jsonl", (GOOD + '{"text": 12, "label": "x"}\n').encode(), 2, "text"),
    "text_is_list": ("tl.jsonl", (GOOD + '{"text": ["a"], "label": "x"}\n').encode(), 2, "text"),
    "text_is_null": ("tz.jsonl", (GOOD + '{"text": null, "label": "x"}\n').encode(), 2, "text"),
    "label_is_null": ("lz.jsonl", (GOOD + '{"text": "hi", "label": null}\n').encode(), 2, "label"),
    "label_is_float": ("lf.jsonl", (GOOD + '{"text": "hi", "label": 1.5}\n').encode(), 2, "label"),
    "label_is_bool": ("lb.jsonl", (GOOD + '{"text": "hi", "label": true}\n').encode(), 2, "label"),
    "label_is_empty": ("le.jsonl", (GOOD + '{"text": "hi", "label": ""}\n').encode(), 2, "label"),
    "latin1_bytes": ("enc.jsonl", GOOD.encode() + '{"text": "café", "label": "x"}\n'.encode("latin-1"), 2, None),
    "utf16_file": ("u16.jsonl", GOOD.encode("utf-16"), 1, None),
    "binary_garbage": ("bin.jsonl", bytes(range(256)) * 4, None, None),
    "huge_text": (
        "h.jsonl",
        (GOOD + json.dumps({"text": "a" * (MAX_TEXT_CHARS + 1), "label": "x"})).encode(),
        2,
        "text",
    ),
    "csv_missing_column": ("mc.csv", b"utterance,label\nhi,x\n", 1, "text"),
    "csv_wrong_field_count": ("wf.csv", b"text,label\nhi,x\nhello,y,extra\n", 3, None),
    "csv_unclosed_quote": ("uq.csv", b'text,label\nhi,x\n"broken,y\n', None, None),
    "csv_empty": ("ce.csv", b"", 1, None),
    "csv_empty_text": ("cet.csv", b"text,label\nhi,x\n ,y\n", 3, "text"),
    "csv_header_only": ("ho.csv", b"text,label\n", None, None),
    "unsupported_suffix": ("data.parquet", b"PAR1", None, None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_file_names_file_line_and_key(tmp_path: Path, name: str) -> None:
    filename, content, line, key = CASES[name]
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_records(path)
    err = info.value
    assert err.path == str(path) and str(path) in str(err)
    if line is not None:
        assert err.line == line and f"{path}:{line}" in str(err)
    if key is not None:
        assert err.key == key and f"[{key}]" in str(err)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_records(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="file not found"):
        read_texts(tmp_path / "nope.txt")


def test_path_escaping_the_data_folder_is_refused(tmp_path: Path) -> None:
    dm = IntentDataModule(data_dir=str(tmp_path / "data"), train_file="../../../etc/shadow_nope.jsonl")
    with pytest.raises(DataError, match="escapes the data folder"):
        _ = dm.labels


def test_single_label_training_data_and_bad_config(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "one.jsonl", records(["refund"]))
    dm = IntentDataModule(data_dir=str(tmp_path), train_file=str(path), val_file=str(path), backbone="scratch")
    with pytest.raises(DataError, match="at least 2 labels"):
        _ = dm.labels
    with pytest.raises(ConfigError):
        IntentDataModule(max_length=1)
    with pytest.raises(ConfigError):
        IntentDataModule(batch_size=0)


def test_unknown_test_label_names_the_test_file(tmp_path: Path) -> None:
    files = write_splits(tmp_path)
    bad = write_jsonl(tmp_path / "bad_test.jsonl", [{"text": "hello", "label": "greeting"}])
    dm = IntentDataModule(
        data_dir=str(tmp_path),
        train_file=str(files["train"]),
        val_file=str(files["val"]),
        test_file=str(bad),
        backbone="scratch",
    )
    with pytest.raises(DataError, match=r"bad_test.jsonl:1: \[label\]"):
        dm.setup("test")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_with_a_foreign_error(tmp_path: Path, blob: bytes) -> None:
    for suffix in (".jsonl", ".csv"):
        path = tmp_path / f"fuzz{suffix}"
        path.write_bytes(blob)
        try:
            rows = read_records(path)
        except TridentError as err:
            assert str(path) in str(err)
        else:
            assert all(r.text.strip() and r.label for r in rows)


def test_150_plus_non_ascii_intents_and_a_validation_only_label(tmp_path: Path) -> None:
    """152 intents with non-ASCII names and texts train, export and serve with their names intact; a label only
    validation has is an error naming the validation file, line and label (not a 152-name list)."""
    import torch

    from trident_core.export import export_artifact
    from trident_nlp.export import IntentPredictor
    from trident_nlp.model import IntentClassifier
    from trident_nlp.module import IntentModule

    names = [f"intención_{i}_日本" for i in range(151)] + ["oos"]
    train = [{"text": f"quiero número {i} ünïcödé 東京 {k} 🙂", "label": n}
             for i, n in enumerate(names) for k in range(2)]
    val = [{"text": f"número {i} 東京 ✓", "label": n} for i, n in enumerate(names)]
    bad = write_jsonl(tmp_path / "val_bad.jsonl", [*val[:5], {"text": "¿qué tiempo hace?", "label": "météo"}])
    common = {"data_dir": str(tmp_path), "train_file": str(write_jsonl(tmp_path / "train.jsonl", train)),
              "backbone": "scratch", "wordpiece_vocab_size": 400, "batch_size": 64}
    dm = IntentDataModule(val_file=str(bad), **common)
    with pytest.raises(DataError, match=r"val_bad.jsonl:6: \[label\] label 'météo' does not occur in the training "
                                        r"data \(152 labels\)") as err:
        dm.setup("fit")
    assert "intención_3_日本" not in str(err.value)
    dm = IntentDataModule(val_file=str(write_jsonl(tmp_path / "val.jsonl", val)), **common)
    assert dm.labels == sorted(names) and dm.num_labels == 152
    net = IntentClassifier(dm.num_labels, dm.backbone, dm.vocab_size, dm.max_length, hidden_size=32, num_layers=1,
                           num_heads=2)
    module = IntentModule(net=net, labels=dm.labels, tokenizer_json=dm.tokenizer_json)
    from lightning.pytorch import Trainer

    torch.manual_seed(0)
    Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=str(tmp_path), max_epochs=1).fit(module, dm)
    artifact = export_artifact(module.export_spec(), tmp_path / "artifact", domain="nlp").path
    predictor = IntentPredictor.from_artifact(artifact)
    assert predictor.metadata.labels == sorted(names)  # non-ASCII names survive metadata.json
    rows = predictor.predict(["número 7 東京 ✓", "🙂"])
    assert all(row["intent"] in names for row in rows)
