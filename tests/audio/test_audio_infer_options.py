"""`trident-audio infer --decoder/--beam_size/--lm_weight/--word_bonus`: the artifact's decoding settings overridden
for one run (declared through `DomainSpec.infer_options`), and what the artifact cannot honour refused with exit 2."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from trident_audio.cli import main
from trident_audio.decoding import WordNgramLM
from trident_audio.module import SpeechModule
from trident_audio.textlm import build_kneser_ney

SENTENCES = ["the cat sat on the mat", "a dog sat on the log", "the dog ran"]


def _edited(folder: Path, copy: Path, lm: dict | None, **meta: object) -> Path:
    """A copy of an artifact with another LM file (``lm``; ``None``: none) and other ``domain_metadata`` values."""
    shutil.copytree(folder, copy)
    metadata = json.loads((copy / "metadata.json").read_text())
    metadata["domain_metadata"].update(meta)
    if lm is None:
        metadata["domain_metadata"]["lm_file"] = None
        (copy / "lm.json").unlink()
    else:
        (copy / "lm.json").write_text(json.dumps(lm))
    (copy / "metadata.json").write_text(json.dumps(metadata))
    return copy


@pytest.fixture(scope="module")
def artifact(exported: tuple[SpeechModule, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's tiny untrained artifact, stored with the greedy decoder and a Kneser-Ney trigram (ARPA)."""
    arpa = build_kneser_ney([s.split() for s in SENTENCES], 3).to_dict()
    return _edited(exported[1], tmp_path_factory.mktemp("infer-options") / "arpa", arpa, decoder="greedy")


@pytest.fixture
def manifest(tmp_path: Path, write_wav: Callable[..., Path], write_manifest: Callable[..., Path]) -> Path:
    rows = [{"audio_filepath": str(write_wav(tmp_path / f"{i}.wav", seconds=0.6, freq=300.0 + 200 * i)),
             "text": SENTENCES[i]} for i in range(2)]
    return write_manifest(tmp_path / "m.jsonl", rows)


def _infer(capsys: pytest.CaptureFixture[str], artifact: Path, manifest: Path, *options: str) -> list[dict]:
    capsys.readouterr()
    main(["infer", "--artifact", str(artifact), "--input", str(manifest), *options])
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_overrides_reach_the_decoder_and_the_rows(
    artifact: Path, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert json.loads((artifact / "metadata.json").read_text())["domain_metadata"]["decoder"] == "greedy"
    stored = _infer(capsys, artifact, manifest)
    assert [r["decoder"] for r in stored] == ["greedy", "greedy"] and stored[0]["text"] == SENTENCES[0]
    beam = _infer(capsys, artifact, manifest, "--decoder", "beam", "--beam_width", "4", "--lm_weight", "0.7",
                  "--word_score", "2")
    assert [r["decoder"] for r in beam] == ["beam", "beam"]
    pytest.importorskip("flashlight.lib.text.decoder", reason="flashlight-text is not installed")
    # a word bonus this large makes flashlight emit words; it only emits the LM's words (its lexicon)
    flashlight = _infer(capsys, artifact, manifest, "--decoder", "flashlight", "--word_bonus", "50")
    assert [r["decoder"] for r in flashlight] == ["flashlight", "flashlight"]
    words = [w for r in flashlight for w in r["pred_text"].split()]
    assert words and set(words) <= {w for s in SENTENCES for w in s.split()}, words


def test_what_the_artifact_cannot_honour_is_exit_2(
    artifact: Path, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    no_lm = _edited(artifact, tmp_path / "no-lm", None)
    counted = _edited(artifact, tmp_path / "counted", WordNgramLM.train(SENTENCES).to_dict())  # not ARPA
    cases = [
        (artifact, ["--decoder", "viterbi"], "argument --decoder: invalid choice: 'viterbi'"),
        (artifact, ["--temperature", "1"], "unrecognized arguments: --temperature 1"),
        (artifact, ["--decoder", "beam", "--beam_size", "0"], "error: --beam_size must be >= 1, got 0"),
        (artifact, ["--lm_weight", "1"], "error: --lm_weight: for --decoder beam or flashlight only, and this run "
                                         "decodes greedily (as the artifact stored it); add --decoder beam"),
        (no_lm, ["--decoder", "beam", "--word_bonus", "1"], f"error: {no_lm}: the artifact has no LM"),
        (counted, ["--decoder", "flashlight"], f"error: {counted}: --decoder flashlight needs an ARPA LM in the "
                                               "artifact and this one has the word LM counted from the training"),
    ]
    for folder, options, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            _infer(capsys, folder, manifest, *options)
        assert exit_info.value.code == 2, options
        assert message in capsys.readouterr().err, options
    assert _infer(capsys, no_lm, manifest, "--decoder", "beam", "--beam_size", "2")[0]["decoder"] == "beam"


def test_flashlight_not_installed_is_exit_2_naming_the_extra(
    artifact: Path, manifest: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on a machine without the extra: every `import flashlight...` raises ImportError."""
    for name in ["flashlight", *(m for m in sys.modules if m.startswith("flashlight."))]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(SystemExit) as exit_info:
        _infer(capsys, artifact, manifest, "--decoder", "flashlight")
    assert exit_info.value.code == 2
    assert ("error: --decoder 'flashlight' needs flashlight-text: pip install 'trident-audio[flashlight]'"
            in capsys.readouterr().err)
