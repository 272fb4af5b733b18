"""ARPA n-gram LMs (`--model.lm_path`): known probabilities, round trips, parse errors naming file:line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from trident_audio.arpa import ArpaLM, lm_from_dict, read_arpa
from trident_audio.decoding import WordNgramLM
from trident_core.errors import DataError

ARPA = """some tool's banner before the header

\\data\\
ngram 1=5
ngram 2=3

\\1-grams:
-1.0\t<s>\t-0.3
-0.5\t</s>
-0.7\thello\t-0.2
-0.9\tworld\t-0.1
-2.0\t<unk>

\\2-grams:
-0.1\t<s> hello
-0.2\thello world
-0.05\tworld </s>

\\end\\
"""


@pytest.fixture
def arpa_file(tmp_path: Path) -> Path:
    path = tmp_path / "lm.arpa"
    path.write_text(ARPA)
    return path


def test_scores_follow_the_file_with_back_off(arpa_file: Path) -> None:
    lm = read_arpa(arpa_file)
    assert lm.order == 2 and lm.vocabulary_size == 5
    assert lm.score([], "hello") == pytest.approx(-0.1 * math.log(10))  # the bigram <s> hello
    assert lm.score(["hello"], "world") == pytest.approx(-0.2 * math.log(10))
    assert lm.score(["world"], "hello") == pytest.approx((-0.1 - 0.7) * math.log(10))  # back-off(world) + P(hello)
    assert lm.score(["hello"], "zebra") == pytest.approx((-0.2 - 2.0) * math.log(10))  # unknown: <unk>


def test_round_trips_through_arpa_text_and_json(arpa_file: Path, tmp_path: Path) -> None:
    lm = read_arpa(arpa_file)
    again = tmp_path / "again.arpa"
    again.write_text(lm.to_arpa())
    reread = read_arpa(again)
    assert reread.ngrams == lm.ngrams
    restored = lm_from_dict(json.loads(json.dumps(lm.to_dict())))
    assert isinstance(restored, ArpaLM) and restored.ngrams == lm.ngrams
    counted = WordNgramLM.train(["hello world"], order=2)  # the counted LM still loads as itself
    assert isinstance(lm_from_dict(json.loads(json.dumps(counted.to_dict()))), WordNgramLM)


@pytest.mark.parametrize(("broken", "line", "message"), [
    (ARPA.replace("-0.7\thello", "abc\thello"), 10, "malformed 1-gram line 'abc"),
    (ARPA.replace("ngram 2=3", "ngram two=3"), 5, "malformed count line"),
    (ARPA.replace("-0.2\thello world", "-0.2\thello world -0.1 extra"), 16, "malformed 2-gram line"),
    (ARPA.replace("\\2-grams:", "\\3-grams:"), 14, "unexpected section"),
])
def test_a_file_that_does_not_parse_names_file_and_line(
    tmp_path: Path, broken: str, line: int, message: str
) -> None:
    path = tmp_path / "bad.arpa"
    path.write_text(broken)
    with pytest.raises(DataError, match=message) as err:
        read_arpa(path)
    assert str(err.value).startswith(f"{path}:{line}: ")


def test_whole_file_problems_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.arpa"
    for text, message in [("hello\n", r"no \\data\\ header"), (ARPA.replace("\\end\\", ""), r"missing \\end\\"),
                          (ARPA.replace("ngram 1=5", "ngram 1=6"), "announces 6 1-grams, the file holds 5")]:
        path.write_text(text)
        with pytest.raises(DataError, match=message):
            read_arpa(path)


@pytest.mark.slow  # > 20 s on 2 cores: the slow pass (issue 17: default pass < 15 min)
def test_fit_with_an_arpa_lm_keeps_it_in_checkpoint_and_artifact(
    tmp_path: Path, arpa_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from trident_audio.cli import main

    base = ["--config", "debug", "--trainer.default_root_dir", str(tmp_path / "run"),
            "--data.data_dir", str(tmp_path / "data")]
    bad = tmp_path / "bad.arpa"
    bad.write_text(ARPA.replace("-0.9\tworld", "x\tworld"))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *base, "--model.lm_path", str(bad)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: {bad}:11: malformed 1-gram line")

    main(["fit", *base, "--model.lm_path", str(arpa_file)])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["trident"]["extras"]["lm"] == read_arpa(arpa_file).to_dict()
    artifact_lm = json.loads((tmp_path / "run" / "artifact" / "lm.json").read_text())
    assert artifact_lm["kind"] == "arpa"
