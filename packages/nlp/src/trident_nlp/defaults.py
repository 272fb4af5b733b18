"""The embedded default dataset: customer-support intents generated from templates and slot values.

Every split is generated deterministically. Validation and test utterances come from templates (and
item names) that training never sees, so they measure generalisation rather than memorised phrasings.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

DATASET_VERSION = "2"
SPLITS = ("train", "validation", "test")
PER_INTENT = {"train": 80, "validation": 20, "test": 24}
OOS_COUNT = {"train": 120, "validation": 60, "test": 100}
OOS_LABEL = "oos"

# The tables live in templates.json (data, not code):
# - slots / oos_slots: slot -> [values used in training, values only in validation/test]
# - intents: intent -> [training templates, held-out templates]; held-out ones feed validation and test
# - oos: [training templates, held-out templates] of the out-of-scope class
# - prefixes / suffixes: what a user puts around a request
_TABLES = json.loads((Path(__file__).parent / "templates.json").read_text("utf-8"))
_SLOTS: dict[str, list[list[str]]] = _TABLES["slots"]
INTENTS: dict[str, list[list[str]]] = _TABLES["intents"]
_OOS: list[list[str]] = _TABLES["oos"]
_OOS_SLOTS: dict[str, list[list[str]]] = _TABLES["oos_slots"]
_PREFIXES: list[str] = _TABLES["prefixes"]
_SUFFIXES: list[str] = _TABLES["suffixes"]


def _fill(template: str, slots: dict[str, list[list[str]]], held_out: bool, rng: random.Random) -> str:
    def value(match: re.Match[str]) -> str:
        seen, unseen = slots[match.group(1)]
        pool = unseen + seen[:3] if held_out else seen
        return rng.choice(pool)

    return re.sub(r"\{(\w+)\}", value, template)


def _generate(
    templates: list[str],
    slots: dict[str, list[list[str]]],
    count: int,
    held_out: bool,
    rng: random.Random,
    exclude: set[str],
) -> list[str]:
    out: list[str] = []
    seen = set(exclude)
    for _ in range(count * 200):
        if len(out) == count:
            break
        text = rng.choice(_PREFIXES) + _fill(rng.choice(templates), slots, held_out, rng) + rng.choice(_SUFFIXES)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def generate_default_dataset(seed: int = 13) -> dict[str, list[dict[str, str]]]:
    """All three splits of the default dataset as lists of ``{"text", "label"}`` records.

    Every intent holds out two everyday phrasings and its paraphrase templates (and some slot values): validation
    gets one phrasing and the first half of the paraphrases, test the rest, so no validation or test
    utterance is a filled training template.
    """
    rng = random.Random(seed)
    splits: dict[str, list[dict[str, str]]] = {name: [] for name in SPLITS}
    groups = [(name, train, held, _SLOTS, PER_INTENT) for name, (train, held) in INTENTS.items()]
    groups.append((OOS_LABEL, _OOS[0], _OOS[1], _OOS_SLOTS, OOS_COUNT))
    for label, train, held, slots, counts in groups:
        # the last two "everyday" phrasings are held out too: they share words with training, the
        # paraphrases share almost none, so validation and test mix near and far generalisation
        train, near = train[:-2], train[-2:]
        half = len(held) // 2
        sources = {
            "train": (train, False),
            "validation": ([near[0], *held[:half]], True),
            "test": ([near[1], *held[half:]], True),
        }
        used: set[str] = set()
        for split, (templates, held_out) in sources.items():
            texts = _generate(templates, slots, counts[split], held_out, rng, used)
            used.update(texts)
            splits[split].extend({"text": text, "label": label} for text in texts)
    for records in splits.values():
        rng.shuffle(records)
    return splits


def build_default_dataset(target: Path) -> None:
    """Write ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl`` into ``target``."""
    for split, records in generate_default_dataset().items():
        with open(target / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record) + "\n")


def demo_inputs(data_dir: Path) -> str:
    """A text file of a few test utterances of the built default dataset (the ``--input`` of the demo)."""
    data_dir = Path(data_dir)
    lines = [json.loads(line)["text"] for line in (data_dir / "test.jsonl").read_text("utf-8").splitlines()[:20]]
    path = data_dir / "demo_inputs.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def demo_commands(data_dir: Path, count: int = 24) -> list[dict[str, str]]:
    """``{"text", "label"}`` of the first ``count`` test utterances of the built default dataset: the held-out
    commands that the pipeline row of ``trident demo`` speaks and types."""
    lines = (Path(data_dir) / "test.jsonl").read_text("utf-8").splitlines()[:count]
    return [{"text": row["text"], "label": row["label"]} for row in map(json.loads, lines)]
