"""The seam between training and serving: one decode rule, one metadata shape, one manifest path rule, one
sample rate, and the word LM carried as a checkpoint extra."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from trident_audio.data import SpeechDataset, collate_speech, read_manifest
from trident_audio.decoding import WordNgramLM
from trident_audio.export import SpeechMetadata, Transcriber, list_inputs
from trident_audio.model import LogMelFeatures, tiny_encoder
from trident_audio.module import SpeechModule
from trident_audio.text import CharTokenizer
from trident_core.errors import ArtifactError, ConfigError, DataError

LM_TEXTS = ["ab", "ab ab", "ab ba"]  # the texts of the `exported` fixture (conftest.py)


def _ambiguous_log_probs(vocab: list[str]) -> np.ndarray:
    """Frames whose acoustics slightly prefer "bb" where the LM only knows "ab"."""
    probs = np.full((3, len(vocab)), 1e-3)
    a, b, blank = vocab.index("a"), vocab.index("b"), 0
    probs[0, [a, b]] = [0.45, 0.5]
    probs[1, blank] = 0.95
    probs[2, b] = 0.95
    probs /= probs.sum(axis=1, keepdims=True)
    return np.log(probs)


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_test_step_and_artifact_decode_the_same_log_probs_the_same_way(
    exported: tuple[SpeechModule, Path], decoder: str
) -> None:
    module, folder = exported
    module.decoder = decoder
    transcriber = Transcriber(folder, decoder=decoder)
    tokens = module.tokenizer.tokens
    rng = np.random.default_rng(1)
    rows = [_ambiguous_log_probs(tokens)]
    for frames in (12, 30):
        logits = 3 * rng.standard_normal((frames, len(tokens)))
        rows.append(logits - np.log(np.exp(logits).sum(-1, keepdims=True)))
    width = max(len(r) for r in rows)
    batch = torch.full((len(rows), width, len(tokens)), -30.0)
    for i, row in enumerate(rows):
        batch[i, : len(row)] = torch.from_numpy(row)
    lengths = torch.tensor([len(r) for r in rows])
    in_training = module.transcribe(batch, lengths)
    served = [transcriber.decode(row.astype(np.float32)) for row in rows]
    assert in_training == served
    # the LM reaches both paths: beam + LM reads the ambiguous frames as the LM's word, greedy as the acoustics'
    assert in_training[0] == ("ab" if decoder == "beam" else "bb")


def test_the_lm_is_a_checkpoint_extra_and_survives_a_safe_reload(tmp_path: Path) -> None:
    module = SpeechModule(tiny_encoder(), lm_texts=LM_TEXTS)
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert set(checkpoint) == {"state_dict", "trident"}  # no domain key of its own
    torch.save(checkpoint, tmp_path / "x.ckpt")
    loaded = torch.load(tmp_path / "x.ckpt", weights_only=True)  # plain data only
    fresh = SpeechModule(tiny_encoder())
    assert fresh.lm is None
    fresh.on_load_checkpoint(loaded)
    assert fresh.lm is not None and fresh.lm.score(["ab"], "ba") == module.lm.score(["ab"], "ba")
    no_lm = SpeechModule(tiny_encoder(), lm_texts=LM_TEXTS, lm_order=0)
    assert no_lm.lm is None


def test_metadata_is_one_dataclass_written_by_export_and_read_by_inference(
    exported: tuple[SpeechModule, Path], tmp_path: Path
) -> None:
    folder = exported[1]
    written = json.loads((folder / "metadata.json").read_text())
    meta = Transcriber(folder).metadata
    assert meta == SpeechMetadata.from_dict(written["domain_metadata"]) and meta.to_dict() == written["domain_metadata"]
    assert meta.sample_rate == meta.features["sample_rate"] == 16000 and meta.lm_file == "lm.json"
    assert (meta.decoder, meta.beam_size, meta.lm_weight, meta.word_bonus) == ("beam", 8, 1.0, 0.5)

    for key, value, message in [("sample_rate", 8000, r"sample_rate\] 8000 Hz disagrees with the feature front"),
                                ("decoder", "viterbi", r"decoder\] 'viterbi'"),
                                ("tokens", None, r"missing \['tokens'\]")]:
        edited = dict(written)
        edited["domain_metadata"] = dict(written["domain_metadata"])
        if value is None:
            del edited["domain_metadata"][key]
        else:
            edited["domain_metadata"][key] = value
        copy = shutil.copytree(folder, tmp_path / key)
        (copy / "metadata.json").write_text(json.dumps(edited))
        with pytest.raises(ArtifactError, match=message):
            Transcriber(copy)


def test_training_manifests_and_infer_inputs_resolve_audio_paths_alike(
    tmp_path: Path, write_wav: Callable[..., Path], write_manifest: Callable[..., Path]
) -> None:
    write_wav(tmp_path / "m" / "clips" / "a.wav", seconds=0.3)
    outside = write_wav(tmp_path / "elsewhere" / "b.wav", seconds=0.3)
    good = write_manifest(tmp_path / "m" / "good.jsonl", [
        {"audio_filepath": "clips/../clips/a.wav", "text": "one"},
        {"audio_filepath": str(outside), "text": "two"},
    ])
    expected = [(tmp_path / "m" / "clips" / "a.wav").resolve(), outside]
    assert [u.audio_path for u in read_manifest(good)] == expected == [i.path for i in list_inputs(good)]

    bad = write_manifest(tmp_path / "m" / "bad.jsonl", [{"audio_filepath": "../elsewhere/b.wav", "text": "x"}])
    errors = []
    for reader in (read_manifest, list_inputs):
        with pytest.raises(DataError, match=r"bad.jsonl:1: \[audio_filepath\] relative path") as err:
            reader(bad)
        errors.append(str(err.value))
    assert errors[0] == errors[1]


def test_a_batch_at_another_rate_than_the_net_is_a_config_error(
    tmp_path: Path, write_wav: Callable[..., Path], write_manifest: Callable[..., Path]
) -> None:
    write_wav(tmp_path / "a.wav", seconds=0.3)
    manifest = write_manifest(tmp_path / "m.jsonl", [{"audio_filepath": "a.wav", "text": "hi"}])
    utts = read_manifest(manifest, tokenizer=CharTokenizer())
    batch = collate_speech([SpeechDataset(utts, 16000)[0]])
    assert batch["sample_rate"] == 16000
    module = SpeechModule(tiny_encoder(sample_rate=8000), lm_order=0)  # built in Python, no link to help
    with pytest.raises(ConfigError, match=r"16000 Hz \(data.sample_rate\).*8000 Hz \(model.net.init_args"):
        module.training_step(batch, 0)
    matching = SpeechModule(tiny_encoder(sample_rate=16000), lm_order=0)
    assert torch.isfinite(matching.training_step(batch, 0))  # control: the same batch at the net's rate trains


def test_a_net_whose_front_end_runs_at_another_rate_is_refused() -> None:
    net = tiny_encoder(sample_rate=16000)
    net.features = LogMelFeatures(sample_rate=8000, n_mels=40)
    with pytest.raises(ConfigError, match=r"declares sample_rate 16000 but its feature front end is built for 8000"):
        SpeechModule(net)


def test_word_lm_from_linked_texts_matches_one_trained_directly() -> None:
    module = SpeechModule(tiny_encoder(), lm_texts=LM_TEXTS, lm_order=3)
    direct = WordNgramLM.train(LM_TEXTS, order=3)
    assert module.lm is not None and module.lm.to_dict() == direct.to_dict()
