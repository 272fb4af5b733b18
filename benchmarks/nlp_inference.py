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

from benchmarks.common import Row, Settings, isolated_interleave, make_row, timed_arm

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


def eager_arm(net_path: str, tokenizer_json: str, batches: list[list[str]]) -> Any:
    """The eager arm, built in its own process (benchmarks.common.isolated_interleave)."""
    from trident_nlp.text import TextEncoder

    encoder = TextEncoder(tokenizer_json, 64)
    net = torch.load(net_path, weights_only=False).eval()

    def eager() -> None:
        with torch.inference_mode():
            for b in batches:
                ids, mask = encoder.pad(encoder.encode(b))
                net(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))

    return eager


def onnx_arm(artifact: str, threads: int, batches: list[list[str]]) -> Any:
    """The artifact arm (onnxruntime, the product's predictor), built in its own process."""
    from trident_nlp.export import IntentPredictor

    classifier = IntentPredictor.from_artifact(artifact, threads=threads)
    return lambda: [classifier.logits(b) for b in batches]


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
    net_path = settings.workdir / "P3" / "eager-net.pt"
    torch.save(net, net_path)
    texts = [r.text for r in dm.records["test"]]
    params = sum(p.numel() for p in net.parameters())
    reps = settings.pick(3, 5)
    rows = []
    for batch_size in (1, 32):
        n_batches = settings.pick(2, 20 if batch_size == 1 else 4)
        batches = [texts[i * batch_size : (i + 1) * batch_size] for i in range(n_batches)]
        got = classifier.logits(batches[0])
        with torch.inference_mode():
            ids, mask = encoder.pad(encoder.encode(batches[0]))
            want = net(torch.tensor(ids), torch.tensor(mask)).numpy()
        diff = float(np.abs(got - want).max())
        timed = isolated_interleave({
            "eager": ("benchmarks.nlp_inference:eager_arm", {"net_path": str(net_path),
                                                             "tokenizer_json": dm.tokenizer_json, "batches": batches}),
            "onnx": ("benchmarks.nlp_inference:onnx_arm", {"artifact": str(artifact), "threads": settings.threads,
                                                           "batches": batches}),
        }, reps=reps, warmup=1, threads=settings.threads)
        scale = 1e3 / n_batches
        what: dict[str, Any] = {"batch": batch_size, "threads": settings.threads, "trainable_params": None,
                "data": f"{n_batches} batches of the intent test split, tokenization included"}
        rows.append(make_row(
            "P3", f"NLP inference latency per batch, batch {batch_size} ({dm.backbone}, {params / 1e6:.1f}M params)",
            timed_arm(timed, "eager", "PyTorch eager (SDPA)", scale, precision="fp32", **what),
            timed_arm(timed, "onnx", "exported artifact (onnxruntime)", scale, precision="fp32", **what),
            "ms/batch", COMMAND, target=(">=", 2.0),
            notes=f"{reps} interleaved reps after 1 warm-up, each arm in its own process (its own peak RSS); "
            f"max |logit diff| {diff:.1e}",
        ))
    return rows
