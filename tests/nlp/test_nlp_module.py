"""IntentModule training behaviour, learning-rate groups and the out-of-scope threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from nlp_fixtures import (
    INTENT_TEXTS,
    one_thread,  # noqa: F401 (fixture)
    tiny_module,
    write_splits,
)

from trident_core.errors import ConfigError
from trident_nlp.data import IntentDataModule
from trident_nlp.model import IntentClassifier, tiny_classifier
from trident_nlp.module import IntentModule
from trident_nlp.oos import choose_threshold, final_index, in_scope_rule, oos_metrics, scores_from_logits

pytestmark = pytest.mark.usefixtures("one_thread")


def _datamodule(tmp_path: Path, **kwargs) -> IntentDataModule:
    files = write_splits(tmp_path)
    return IntentDataModule(
        data_dir=str(tmp_path),
        train_file=str(files["train"]),
        val_file=str(files["val"]),
        test_file=str(files["test"]),
        backbone="scratch",
        wordpiece_vocab_size=200,
        batch_size=16,
        **kwargs,
    )


def _module_for(dm: IntentDataModule, dropout: float = 0.0, **kwargs) -> IntentModule:
    """What the CLI links, written out: the net's data-given arguments, labels and tokenizer from the data."""
    net = IntentClassifier(dm.num_labels, dm.backbone, dm.vocab_size, dm.max_length, hidden_size=32, num_layers=1,
                           num_heads=2, dropout=dropout)
    return IntentModule(net=net, labels=dm.labels, tokenizer_json=dm.tokenizer_json, **kwargs)


def _trainer(tmp_path: Path, **kwargs) -> Trainer:
    return Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        **kwargs,
    )


def _loss(module: IntentModule, batch: dict[str, torch.Tensor]) -> float:
    module.eval()
    with torch.no_grad():
        logits = module(batch["input_ids"], batch["attention_mask"])
    return float(torch.nn.functional.cross_entropy(logits, batch["labels"]))


def test_tiny_model_overfits_a_small_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    dm = _datamodule(tmp_path)
    module = _module_for(dm, optimizer=lambda p: torch.optim.AdamW(p, lr=3e-3), warmup_ratio=0.0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    before = _loss(module, batch)
    module.train()
    _trainer(tmp_path, max_steps=60, overfit_batches=1, num_sanity_val_steps=0, limit_val_batches=0).fit(module, dm)
    after = _loss(module, batch)
    assert after < 0.25 * before, (before, after)


def test_train_accuracy_is_the_epoch_accuracy_of_the_training_batches(tmp_path: Path) -> None:
    """``train/acc`` comes from running sums (cheap per step); it must equal torchmetrics' accuracy over the epoch."""
    from torchmetrics.classification import MulticlassAccuracy

    torch.manual_seed(0)
    dm = _datamodule(tmp_path)
    module = _module_for(dm, optimizer=lambda p: torch.optim.SGD(p, lr=0.0), warmup_ratio=0.0)  # weights fixed
    trainer = _trainer(tmp_path, max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(module, dm)
    reference = MulticlassAccuracy(len(dm.labels), average="micro")
    module.eval()
    with torch.no_grad():
        for batch in dm.train_dataloader():
            reference.update(module(batch["input_ids"], batch["attention_mask"]), batch["labels"])
    assert float(trainer.callback_metrics["train/acc"]) == pytest.approx(float(reference.compute()), abs=1e-6)


def test_validation_chooses_the_threshold_and_test_reports_clinc_metrics(tmp_path: Path) -> None:
    dm = _datamodule(tmp_path)
    module = _module_for(dm)
    trainer = _trainer(tmp_path, max_epochs=2, num_sanity_val_steps=0)
    trainer.fit(module, dm)
    assert torch.isfinite(module.oos_threshold)
    assert {"val/acc", "val/macro_f1", "val/in_scope_acc", "val/oos_recall"} <= set(trainer.callback_metrics)
    results = trainer.test(module, dm, verbose=False)[0]
    assert {"test/acc", "test/macro_f1", "test/in_scope_acc", "test/oos_recall"} <= set(results)
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000
    assert (tmp_path / "test_report.json").is_file()


def test_checkpoint_carries_tokenizer_and_threshold(tmp_path: Path) -> None:
    module = tiny_module()
    module.oos_threshold.fill_(0.42)
    path = tmp_path / "m.ckpt"
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)
    assert "tokenizer_json" not in checkpoint["hyper_parameters"] and "net" not in checkpoint["hyper_parameters"]
    assert checkpoint["trident"]["extras"]["tokenizer_json"] == module.tokenizer_json
    assert "trident_nlp" not in checkpoint  # one key for every domain's extras
    torch.save(checkpoint, path)
    loaded = torch.load(path, weights_only=True)
    # built in Python, the net is not a hyperparameter: the caller passes it again
    restored = IntentModule(net=tiny_classifier(4, module.net.encoder.config.vocab_size), **loaded["hyper_parameters"])
    restored.on_load_checkpoint(loaded)
    restored.load_state_dict(loaded["state_dict"])
    assert restored.tokenizer_json == module.tokenizer_json
    assert float(restored.oos_threshold) == pytest.approx(0.42)


def test_head_and_layerwise_encoder_learning_rates() -> None:
    module = tiny_module(encoder_lr=1e-4, head_lr=1e-2, layer_decay=0.5)
    groups = module.param_groups()
    lrs = sorted({g.get("lr") for g in groups})
    assert lrs == [5e-5, 1e-4, 1e-2]  # embeddings (one layer below the top), top layer, head
    head = {id(p) for p in module.net.head.parameters()}
    for group in groups:
        if any(id(p) in head for p in group["params"]):
            assert group["lr"] == 1e-2
    assert any(g.get("weight_decay") == 0.0 for g in groups)
    assert sum(len(g["params"]) for g in groups) == len(list(module.parameters()))


def test_bad_module_config() -> None:
    with pytest.raises(ConfigError, match="at least 2 labels"):
        IntentModule(net=tiny_classifier(2), labels=["only"])
    with pytest.raises(ConfigError, match="model.score"):
        tiny_module(score="entropy")
    with pytest.raises(ConfigError, match="3 outputs but there are 4 labels"):
        IntentModule(net=tiny_classifier(3), labels=["a", "b", "c", "oos"])
    with pytest.raises(ConfigError, match="lacks"):
        IntentModule(net=torch.nn.Linear(2, 2), labels=["a", "b"])
    with pytest.raises(ConfigError, match="vocab_size"):
        IntentClassifier(3, "scratch", vocab_size=None)


def test_threshold_choice_separates_oos_scores() -> None:
    oos = 3
    targets = np.array([0, 1, 2, 0, oos, oos, oos])
    preds = np.array([0, 1, 2, 0, 1, 2, 0])  # the model never predicts oos itself
    scores = np.array([0.9, 0.8, 0.95, 0.7, 0.3, 0.2, 0.4])
    threshold = choose_threshold(scores, preds, targets, oos)
    assert 0.4 < threshold <= 0.7
    final = final_index(preds, in_scope_rule(preds, scores, oos, threshold), oos)
    assert final.tolist() == [0, 1, 2, 0, oos, oos, oos]
    m = oos_metrics(final, targets, oos)
    assert m["in_scope_acc"] == 1.0 and m["oos_recall"] == 1.0
    assert choose_threshold(scores[:4], preds[:4], targets[:4], oos) == float("-inf")  # nothing to calibrate
    logits = np.array([[2.0, 0.0], [0.0, 0.0]])
    assert scores_from_logits(logits).round(3).tolist() == [0.881, 0.5]
    assert scores_from_logits(logits, "energy")[1] == pytest.approx(np.log(2))


def test_labels_without_oos_class_disable_the_threshold() -> None:
    module = tiny_module(labels=[k for k in sorted(INTENT_TEXTS) if k != "oos"])
    assert module.oos_index is None
    assert module.export_spec().metadata["threshold"] is None
