"""P3: NLP inference from the exported artifact (onnxruntime) vs PyTorch eager, batch 1 and 32.

Both arms tokenize with the same ``TextEncoder`` (pad to the batch's longest) and return logits; the eager
baseline runs ``model(**batch)`` under ``torch.inference_mode`` with SDPA attention (transformers' fast
default; the product's training net uses the eager attention that exports cleanly).
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import numpy as np
import torch

from benchmarks.common import Row, Settings, interleave, speedup_row

COMMAND = "uv run python -m benchmarks --only P3"


def build_intent(settings: Settings, backbone: str) -> tuple[Any, Any]:
    """An untrained IntentModule on the embedded data (speed does not depend on the weights) and its data."""
    from trident_nlp.data import IntentDataModule
    from trident_nlp.model import IntentClassifier
    from trident_nlp.module import IntentModule

    dm = IntentDataModule(data_dir=str(settings.workdir / "nlp_data"), backbone=backbone, max_length=64)
    dm.prepare_data()
    dm.setup("fit")
    sizes = {"hidden_size": 32, "num_layers": 1, "num_heads": 2} if backbone == "scratch" else {}
    net = IntentClassifier(dm.num_labels, dm.backbone, dm.vocab_size, 64, **sizes)
    module = IntentModule(net=net, labels=dm.labels, tokenizer_json=dm.tokenizer_json)
    return module.eval(), dm


def _sdpa(net: Any) -> Any:
    fast = copy.deepcopy(net)
    with contextlib.suppress(AttributeError, ValueError, ImportError):
        fast.encoder.set_attn_implementation("sdpa")
    return fast


def run(settings: Settings) -> list[Row]:
    from trident_core.export import export_artifact
    from trident_nlp.export import IntentPredictor
    from trident_nlp.text import TextEncoder

    backbone = "scratch" if settings.quick else "auto"
    module, dm = build_intent(settings, backbone)
    artifact = settings.workdir / "P3" / "artifact"
    export_artifact(module.export_spec(), artifact, domain="nlp")
    classifier = IntentPredictor.from_artifact(artifact, threads=settings.threads)
    encoder = TextEncoder(dm.tokenizer_json, 64)
    net = _sdpa(module.net).eval()
    texts = [r.text for r in dm.records["test"]]
    rows = []
    for batch_size in (1, 32):
        n_batches = settings.pick(2, 20 if batch_size == 1 else 4)
        batches = [texts[i * batch_size : (i + 1) * batch_size] for i in range(n_batches)]

        def onnx(batches: list[list[str]] = batches) -> None:
            for b in batches:
                classifier.logits(b)

        def eager(batches: list[list[str]] = batches) -> None:
            with torch.inference_mode():
                for b in batches:
                    ids, mask = encoder.pad(encoder.encode(b))
                    net(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))

        got = classifier.logits(batches[0])
        with torch.inference_mode():
            ids, mask = encoder.pad(encoder.encode(batches[0]))
            want = net(torch.tensor(ids), torch.tensor(mask)).numpy()
        diff = float(np.abs(got - want).max())
        timed = interleave({"eager": eager, "onnx": onnx}, reps=settings.pick(1, 3), warmup=1)
        scale = 1e3 / n_batches
        rows.append(speedup_row(
            "P3", f"NLP inference latency per batch, batch {batch_size} ({dm.backbone})", "PyTorch eager (SDPA)",
            timed["eager"]["median"], timed["onnx"]["median"], "ms/batch", 2.0, COMMAND, scale=scale,
            notes=f"tokenization included in both; {n_batches} batches x {settings.pick(1, 3)} interleaved reps, "
            f"median; max |logit diff| {diff:.1e}; peak RSS MiB eager {timed['eager']['rss_mb']} / onnxruntime "
            f"{timed['onnx']['rss_mb']}",
            extra={"timings": timed},
        ))
    return rows
