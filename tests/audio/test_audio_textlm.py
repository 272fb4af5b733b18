"""`--model.lm_text`: a Kneser-Ney n-gram LM built from a text corpus, as the ARPA model `--model.lm_path` reads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from trident_audio.arpa import ArpaLM, lm_from_dict, read_arpa
from trident_audio.text import TextNormalizer
from trident_audio.textlm import build_kneser_ney, read_lm_text
from trident_core.errors import DataError

CORPUS = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog", "the cat ran"]


def _vocabulary(lm: ArpaLM) -> list[str]:
    return [w for (w,) in lm.ngrams[0] if w != lm.BOS]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_history_is_a_distribution_over_words_end_of_sentence_and_unk(order: int) -> None:
    lm = build_kneser_ney([s.split() for s in CORPUS], order)
    assert lm.order == order and {"</s>", "<unk>"} <= set(_vocabulary(lm))
    for context in [[], ["the"], ["the", "cat"], ["zebra"], ["sat", "on"], ["on", "the"], ["x", "the", "cat"]]:
        total = sum(math.exp(lm.score(context, w)) for w in _vocabulary(lm))
        assert total == pytest.approx(1.0, abs=1e-9), context
    assert lm.score(["the"], "zebra") < lm.score(["the"], "cat")  # unknown: penalised, never impossible
    assert math.isfinite(lm.score(["the"], "zebra"))
    if order > 1:  # the context counts: "sat" is followed by "on", "mat" ends a sentence
        assert lm.score(["sat"], "on") > lm.score([], "on")
        assert lm.score(["the", "mat"], "</s>") > lm.score(["the", "mat"], "the")


def test_kneser_ney_values_of_a_worked_example() -> None:
    """a b / a b / a c, bigram: unigrams are continuation counts (a:1 b:1 c:1 </s>:2, D1 = 3/(3+2) from the
    counts of counts), bigrams raw counts ((<s> a):3 (a b):2 (a c):1 (b </s>):2 (c </s>):1, D2 = 2/(2+4))."""
    lm = build_kneser_ney([["a", "b"], ["a", "b"], ["a", "c"]], order=2)
    d1, d2 = 3 / 5, 2 / 6
    uniform = d1 * 4 / 5 / 5  # freed mass over a, b, c, </s> and <unk>
    p_b = (1 - d1) / 5 + uniform
    assert math.exp(lm.score([], "<unk>") - lm.score([], "b")) == pytest.approx(uniform / p_b)
    assert math.exp(lm.score(["a"], "b")) == pytest.approx((2 - d2) / 3 + d2 * 2 / 3 * p_b)
    assert math.exp(lm.score(["b"], "a")) == pytest.approx(d2 * 1 / 2 * ((1 - d1) / 5 + uniform))  # backed off
    assert math.exp(lm.score([], "a")) == pytest.approx((3 - d2) / 3 + d2 * 1 / 3 * ((1 - d1) / 5 + uniform))


def test_the_built_model_is_the_arpa_model_it_writes(tmp_path: Path) -> None:
    lm = build_kneser_ney([s.split() for s in CORPUS], 3)
    path = tmp_path / "built.arpa"
    path.write_text(lm.to_arpa())
    reread = read_arpa(path)
    assert reread.ngrams == lm.ngrams
    probes = [(["the"], "cat"), (["on", "the"], "mat"), (["a"], "</s>"), (["zebra"], "dog"), ([], "ran")]
    assert [reread.score(c, w) for c, w in probes] == [lm.score(c, w) for c, w in probes]
    restored = lm_from_dict(json.loads(json.dumps(lm.to_dict())))
    assert isinstance(restored, ArpaLM) and restored.ngrams == lm.ngrams


def test_lines_are_normalised_like_transcripts(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text("The Cat sat, on the MAT!\n\n  \nI've 2 cats.\n")
    lm = read_lm_text(path, TextNormalizer(), order=2)
    assert {"the", "cat", "mat", "i've", "two", "cats"} <= set(_vocabulary(lm))
    assert "The" not in _vocabulary(lm) and "MAT!" not in _vocabulary(lm)


@pytest.mark.parametrize(("content", "line", "message"), [
    (b"hello world\nsecond line\ncaf\xe9 latin-1\n", 3, "not UTF-8 text (byte 0xe9 at column 4)"),
    (b"hello\n\x00\x01binary\n", 2, "NUL byte: this is not a text file"),
])
def test_a_bad_line_names_file_and_line(tmp_path: Path, content: bytes, line: int, message: str) -> None:
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_lm_text(path, TextNormalizer())
    assert str(err.value).startswith(f"{path}:{line}: {message}")


def test_a_missing_or_empty_corpus_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="text corpus not found"):
        read_lm_text(tmp_path / "nope.txt", TextNormalizer())
    empty = tmp_path / "empty.txt"
    empty.write_text("\n ... \n!!\n")
    with pytest.raises(DataError, match="holds no words") as err:
        read_lm_text(empty, TextNormalizer())
    assert str(err.value).startswith(f"{empty}: ")


def _fit_args(tmp_path: Path, corpus: Path) -> list[str]:
    return ["fit", "--config", "debug", "--trainer.default_root_dir", str(tmp_path / "run"), "--data.data_dir",
            str(corpus), "--trainer.limit_train_batches", "1", "--export_on_fit_end.enabled", "false"]


def test_cli_refuses_a_bad_corpus_and_both_lm_options(
    tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trident_audio.cli import main

    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\n\xff\xfe broken\n")
    with pytest.raises(SystemExit) as exit_info:
        main([*_fit_args(tmp_path, corpus), "--model.lm_text", str(bad)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: {bad}:2: not UTF-8 text")
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before the first step
    with pytest.raises(SystemExit) as exit_info:
        main([*_fit_args(tmp_path, corpus), "--model.lm_text", str(bad), "--model.lm_path", str(tmp_path / "x.arpa")])
    assert exit_info.value.code == 2
    assert "model.lm_path and model.lm_text are exclusive" in capsys.readouterr().err


@pytest.mark.slow  # 38 s on the loaded 2-core machine
def test_fit_with_a_text_lm_keeps_it_in_the_checkpoint(tmp_path: Path, corpus: Path) -> None:
    import torch

    from trident_audio.cli import main

    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(CORPUS) + "\n")
    main([*_fit_args(tmp_path, corpus), "--model.lm_text", str(text), "--model.lm_order", "3"])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    expected = build_kneser_ney([s.split() for s in CORPUS], 3).to_dict()
    assert ckpt["trident"]["extras"]["lm"] == json.loads(json.dumps(expected))
