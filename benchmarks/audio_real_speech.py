"""Real read speech: the 10 transcribed utterances of Debian's ``pocketsphinx-testdata``, scored with an artifact.

    sudo apt-get install -y pocketsphinx-testdata      # .ci/run installs it where apt-get is available
    uv run python benchmarks/audio_real_speech.py ARTIFACT [--out DIR] [-- INFER OPTIONS, e.g. --decoder beam]

Two read sets of 16 kHz WAV files with Sphinx transcription files (``<s> words </s> (utterance-id)``): ``cards``
(5 utterances of one speaker, "ten of clubs"...) and ``librivox`` (5 sentences of a LibriVox reading of *Sense and
Sensibility*), 34.4 s in all. :func:`build_manifest` writes them as a NeMo manifest (``audio_filepath``,
``duration``, ``text`` normalised with :class:`~trident_audio.text.TextNormalizer`); :func:`score` runs
``trident-audio infer`` on it (the same function, in this process) and prints the ``infer`` command, then one JSON
row per utterance and a total row (WER and CER from torchmetrics, against the normalised text).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

DATA = Path("/usr/share/pocketsphinx/test/data")
SETS = ("cards", "librivox")  # the package's folders of WAV files with a transcription file
APT = "sudo apt-get install -y pocketsphinx-testdata"
_LINE = re.compile(r"^\s*(?:<s>)?\s*(?P<text>.*?)\s*(?:</s>)?\s*\((?P<id>[^()]+)\)\s*$")


def build_manifest(output: str | Path, data_dir: str | Path = DATA) -> Path:
    """Write the NeMo manifest of the package's transcribed WAV files to ``output``; returns its path.

    Raises:
        DataError: when the package is not installed (naming the apt command), or a transcription line is
            malformed or names a WAV file that is not there (naming the file and line).
    """
    import soundfile as sf

    from trident_audio.text import TextNormalizer
    from trident_core.errors import DataError

    data = Path(data_dir)
    if not data.is_dir():
        raise DataError(f"not found: install Debian's pocketsphinx-testdata ({APT})", path=data)
    normalize = TextNormalizer()
    rows: list[dict[str, Any]] = []
    for name in SETS:
        found = sorted((data / name).glob("*transcription"))
        if not found:
            raise DataError(f"no transcription file in {data / name}; reinstall the package ({APT})", path=data)
        for line, raw in enumerate(found[0].read_text(encoding="utf-8").splitlines(), start=1):
            if not raw.strip():
                continue
            match = _LINE.match(raw)
            if match is None:
                raise DataError("not '<s> words </s> (utterance-id)'", path=found[0], line=line)
            wav = data / name / f"{match['id']}.wav"
            if not wav.is_file():
                raise DataError(f"utterance {match['id']!r} has no WAV file {wav}", path=found[0], line=line)
            rows.append({"audio_filepath": str(wav), "duration": round(sf.info(str(wav)).duration, 3),
                         "text": normalize(match["text"])})
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def score(artifact: str | Path, manifest: str | Path, output: str | Path, options: list[str] | None = None
          ) -> list[dict[str, Any]]:
    """``trident-audio infer --artifact ARTIFACT --input MANIFEST --output OUTPUT OPTIONS`` (run in this process,
    its command printed), then WER/CER per utterance and a last ``"utterance": "total"`` row over all words."""
    from torchmetrics.functional.text import char_error_rate, word_error_rate

    from trident_audio.cli import main

    command = ["infer", "--artifact", str(artifact), "--input", str(manifest), "--output", str(output),
               *(options or [])]
    print("uv run trident-audio " + shlex.join(command))
    main(command)
    rows = [json.loads(line) for line in Path(output).read_text(encoding="utf-8").splitlines()]
    refs, hyps = [r["text"] for r in rows], [r["pred_text"] for r in rows]
    table = [{"utterance": Path(r["audio_filepath"]).stem, "decoder": r["decoder"], "reference": ref,
              "hypothesis": hyp, "wer": round(float(word_error_rate(hyp, ref)), 4),
              "cer": round(float(char_error_rate(hyp, ref)), 4)} for r, ref, hyp in zip(rows, refs, hyps, strict=True)]
    table.append({"utterance": "total", "utterances": len(rows), "words": sum(len(r.split()) for r in refs),
                  "wer": round(float(word_error_rate(hyps, refs)), 4),
                  "cer": round(float(char_error_rate(hyps, refs)), 4)})
    return table


def split_infer_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """(this script's arguments, the infer options after ``--``). By hand: argparse matches an empty ``nargs="*"``
    positional next to ARTIFACT and then rejects what follows ``--``."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="infer options go after --: ... ARTIFACT -- --decoder greedy")
    parser.add_argument("artifact", help="an artifact folder written by `trident-audio export`")
    parser.add_argument("--data", default=str(DATA), help="the package's test data folder")
    parser.add_argument("--out", default="runs/audio-real-speech", help="where the manifest and transcripts go")
    own, options = split_infer_options(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(own)
    out = Path(args.out)
    manifest = build_manifest(out / "pocketsphinx.jsonl", args.data)
    for row in score(args.artifact, manifest, out / "transcripts.jsonl", options):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
