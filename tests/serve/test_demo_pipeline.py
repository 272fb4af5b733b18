"""The pipeline row of ``trident demo``: held-out commands spoken (espeak, a held-out voice), run through the
audio and the nlp artifact, intent accuracy from speech next to the same texts typed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
from serve_fixtures import LABELS, audio_artifact, nlp_artifact

from trident_audio.cli import DOMAIN as AUDIO
from trident_core.demo import DemoRow, pipeline_pairs, run_pipeline_demo
from trident_nlp.cli import DOMAIN as NLP
from trident_nlp.export import infer as nlp_infer
from trident_vision.cli import DOMAIN as VISION

COMMANDS = [("where is my package", "track"), ("i want my money back", "refund"), ("reset my password", "password"),
            ("tell me a joke", "oos"), ("refund please", "refund")]


@pytest.mark.slow  # > 20 s on 2 cores: the slow pass (issue 17: default pass < 15 min)
def test_pipeline_row_speaks_commands_through_both_artifacts(tmp_path: Path) -> None:
    nlp_artifact(tmp_path / "nlp" / "artifact", [text for text, _ in COMMANDS])
    audio_artifact(tmp_path / "audio" / "artifact")
    data = tmp_path / "data" / "nlp"
    data.mkdir(parents=True)
    (data / "test.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in COMMANDS))

    row = run_pipeline_demo(AUDIO, NLP, tmp_path, count=4)

    assert row.error == "" and row.domain == "pipeline (audio -> nlp)" and row.predictions == 4
    spoken = [json.loads(line) for line in (tmp_path / "pipeline" / "pipeline.jsonl").read_text().splitlines()]
    assert [r["text"] for r in spoken] == [t for t, _ in COMMANDS[:4]]  # the manifest's written sentence
    assert all(set(r) >= {"pred_text", "intent", "in_scope"} for r in spoken)
    for r in spoken:  # real speech: a second or more of audio per command
        assert sf.info(r["audio_filepath"]).duration > 0.5
    labels = [y for _, y in COMMANDS[:4]]
    want_speech = sum(r["intent"] == y for r, y in zip(spoken, labels, strict=True)) / 4
    typed = nlp_infer(str(tmp_path / "nlp" / "artifact"), str(tmp_path / "pipeline" / "typed.txt"))
    want_typed = sum(r["intent"] == y for r, y in zip(typed, labels, strict=True)) / 4
    assert row.metrics == {"intent_acc_speech": want_speech, "intent_acc_typed": want_typed}
    assert all(r["intent"] in LABELS for r in spoken)


def test_pipeline_row_only_after_both_domains_ran() -> None:
    domains = {"audio": AUDIO, "nlp": NLP, "vision": VISION}
    ok = [DemoRow("audio"), DemoRow("nlp"), DemoRow("vision")]
    assert pipeline_pairs(domains, ok) == [(AUDIO, NLP)]
    assert pipeline_pairs(domains, [DemoRow("audio"), DemoRow("nlp", error="boom")]) == []
    assert pipeline_pairs(domains, [DemoRow("nlp"), DemoRow("vision")]) == []
