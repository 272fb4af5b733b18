"""Fuzzed core inputs (hypothesis): artifact metadata, checkpoint files and config values. Whatever the
bytes or values, the result is the project's own error type naming the file or key, never a stray
KeyError/TypeError/ValueError from deep inside."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from trident_core.artifact import REQUIRED_KEYS, read_metadata
from trident_core.callbacks import NonFiniteGuard
from trident_core.data import TridentDataModule, seeded_split
from trident_core.errors import ArtifactError, CheckpointError, TridentError
from trident_core.export import load_checkpoint

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_VALID = {"format_version": 1, "domain": "toy", "inputs": [{"name": "x", "dtype": "float32", "shape": ["b", 8]}],
          "outputs": [{"name": "y", "dtype": "float32", "shape": ["b", 3]}],
          "files": {"onnx": "model.onnx", "torch_export": "model.pt2", "weights": "weights.safetensors"},
          "domain_metadata": {}}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("model.onnx", "model.pt2", "weights.safetensors"):
        (tmp_path / name).write_bytes(b"stub")
    return tmp_path


def test_the_valid_metadata_passes(folder: Path) -> None:
    (folder / "metadata.json").write_text(json.dumps(_VALID))
    assert read_metadata(folder)["domain"] == "toy"


@FUZZ
@given(key=st.sampled_from([*REQUIRED_KEYS, "files.onnx", "inputs.0"]), value=_json, drop=st.booleans())
def test_fuzzed_metadata_values_give_artifact_errors(folder: Path, key: str, value: object, drop: bool) -> None:
    meta = json.loads(json.dumps(_VALID))
    top, _, sub = key.partition(".")
    target = meta[top]
    if sub:
        index = int(sub) if sub.isdigit() else sub
        if drop:
            del target[index]
        else:
            target[index] = value
    elif drop:
        del meta[top]
    else:
        meta[top] = value
    (folder / "metadata.json").write_text(json.dumps(meta))
    try:
        read_metadata(folder)
    except ArtifactError as err:
        assert "metadata.json" in str(err) or str(folder) in str(err)


@FUZZ
@given(raw=st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_fuzzed_metadata_bytes_give_artifact_errors(folder: Path, raw: bytes) -> None:
    (folder / "metadata.json").write_bytes(raw)
    with pytest.raises(ArtifactError, match="metadata.json"):
        read_metadata(folder)


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(4)}, "global_step": 3}, path)
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_fuzzed_checkpoint_files_give_checkpoint_errors(tmp_path: Path, good_checkpoint: bytes,
                                                        data: st.DataObject) -> None:
    """Truncated, bit-flipped, random and empty checkpoints."""
    kind = data.draw(st.sampled_from(["truncate", "flip", "random", "empty"]))
    raw = bytearray(good_checkpoint)
    if kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= 0xFF
    elif kind == "random":
        raw = bytearray(data.draw(st.binary(max_size=2000)))
    else:
        raw = bytearray()
    path = tmp_path / "fuzzed.ckpt"
    path.write_bytes(bytes(raw))
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as err:
        assert str(path) in str(err)
    else:  # a flip inside tensor data can leave a loadable file; it must still be a checkpoint
        assert "state_dict" in ckpt


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# each constructor with its oracle: which values are valid. A valid value must be accepted, every other one must be
# refused with a TridentError (a silently accepted invalid value, or a raw TypeError/ValueError, fails).
# The key is what the error message must name.
CONFIG_CASES = {
    "data.batch_size": (lambda v: TridentDataModule(batch_size=v), lambda v: _is_int(v) and v >= 1),
    "data.num_workers": (lambda v: TridentDataModule(num_workers=v), lambda v: _is_int(v) and v >= 0),
    "split fractions": (lambda v: seeded_split(list(range(10)), [v, 0.1], seed=0),
                        lambda v: _is_real(v) and v >= 0 and v + 0.1 <= 1 + 1e-9),
    "NonFiniteGuard.action": (lambda v: NonFiniteGuard(action=v), lambda v: v in ("skip", "stop")),
}


@FUZZ
@given(value=st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=5), st.none(), st.booleans(),
                       st.sampled_from(["skip", "stop"])))
@example(value=float("nan"))  # seeded_split raised a raw ValueError on a NaN fraction until 2026-12-02
@example(value=2.0)  # a float batch size was accepted silently until 2026-12-02
def test_fuzzed_config_values_are_accepted_or_refused_by_their_oracle(value: object) -> None:
    for name, (build, valid) in CONFIG_CASES.items():
        if valid(value):
            build(value)
        else:
            with pytest.raises(TridentError, match=re.escape(name)):
                build(value)


def test_checkpoint_error_names_the_file(tmp_path: Path) -> None:
    shutil.copyfile(__file__, tmp_path / "not_a.ckpt")
    with pytest.raises(CheckpointError, match="not_a.ckpt"):
        load_checkpoint(tmp_path / "not_a.ckpt")
