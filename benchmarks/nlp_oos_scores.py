"""Compare out-of-scope scores of one checkpoint on a validation file (numbers for the nlp README).

    uv run python benchmarks/nlp_oos_scores.py CKPT TRAIN.jsonl VAL.jsonl [--train-mode]

Scores: max_prob, energy (logits) and mahalanobis (class means + shared covariance of the pooled training
embeddings: eval mode, or with ``--train-mode`` dropout on, as the module's training-epoch statistics are).
Prints AUROC, FPR at 95 % TPR, argmax in-scope accuracy and the best in-scope accuracy at OOS recall >= 85 %.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from trident_core.export import load_checkpoint, module_from_checkpoint
from trident_nlp.data import read_records
from trident_nlp.module import IntentModule
from trident_nlp.oos import OosStats, choose_threshold, decide, detection_metrics, oos_metrics, tradeoff_curve
from trident_nlp.text import TextEncoder


def _run(module: IntentModule, texts: list[str], train_mode: bool = False) -> tuple[np.ndarray, np.ndarray]:
    encoder = TextEncoder(module.tokenizer_json, module.net.max_length)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    logits, pooled = np.zeros((len(texts), len(module.labels))), np.zeros((len(texts), module.net.head.in_features))
    module.net.train(train_mode)
    with torch.no_grad():
        for start in range(0, len(order), 128):
            chunk = order[start : start + 128]
            ids, mask = encoder.pad(encoder.encode([texts[i] for i in chunk]))
            out = module.net.logits_and_embedding(torch.from_numpy(ids), torch.from_numpy(mask))
            logits[chunk], pooled[chunk] = out[0].numpy(), out[1].numpy()
    return logits, pooled


def main(ckpt: str, train_file: str, val_file: str, train_mode: bool) -> None:
    start = time.time()
    module = module_from_checkpoint(load_checkpoint(ckpt), IntentModule, ckpt)
    index = {label: i for i, label in enumerate(module.labels)}
    train, val = read_records(train_file), read_records(val_file)
    val_logits, val_pooled = _run(module, [r.text for r in val])
    _, train_pooled = _run(module, [r.text for r in train], train_mode)
    targets = np.array([index[r.label] for r in val])
    oos = module.oos_index
    stats = OosStats.fit(train_pooled, np.array([index[r.label] for r in train]), oos)
    argmax_acc = oos_metrics(val_logits.argmax(-1), targets, oos)
    print(f"argmax: in-scope acc {argmax_acc['in_scope_acc']:.4f}, oos recall {argmax_acc['oos_recall']:.4f}")
    for score in ("max_prob", "energy", "mahalanobis"):
        raw = decide(val_logits, score, oos, None, val_pooled, stats)
        figures = detection_metrics(raw.score, raw.argmax, targets, oos)
        curve = tradeoff_curve(raw.score, raw.argmax, targets, oos)
        row = [f"{score:12s} AUROC {figures['auroc']:.4f} FPR@95 {figures['fpr_at_95_tpr']:.4f}"]
        for point, kwargs in (("balanced", {}), ("in_scope_accuracy", {"min_oos_recall": 0.85})):
            t = choose_threshold(raw.score, raw.argmax, targets, oos, point, **kwargs)
            i = int(np.flatnonzero(curve["threshold"] == t)[0])
            row.append(f"{point}: in-scope {curve['in_scope_acc'][i]:.4f} recall {curve['oos_recall'][i]:.4f}")
        print(" | ".join(row))
    print(f"({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], "--train-mode" in sys.argv)
