"""Operating points, threshold-free detection figures, the Mahalanobis score: module and artifact alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from nlp_fixtures import (
    one_thread,  # noqa: F401 (fixture)
    write_splits,
)

from trident_core.errors import ConfigError
from trident_core.export import export_artifact
from trident_nlp.data import IntentDataModule
from trident_nlp.export import IntentPredictor
from trident_nlp.model import IntentClassifier
from trident_nlp.module import IntentModule
from trident_nlp.oos import Decisions, OosStats, choose_threshold, detection_metrics, tradeoff_curve
from trident_nlp.text import TextEncoder

pytestmark = pytest.mark.usefixtures("one_thread")

OOS = 3
# six in-scope queries (the fifth misclassified) and four out-of-scope ones, the model never predicting oos
TARGETS = np.array([0, 1, 2, 0, 1, 2, OOS, OOS, OOS, OOS])
ARGMAX = np.array([0, 1, 2, 0, 2, 2, 0, 1, 2, 0])
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.3, 0.65, 0.4, 0.35, 0.2])


def _point(threshold: float) -> tuple[float, float]:
    curve = tradeoff_curve(SCORES, ARGMAX, TARGETS, OOS)
    i = int(np.flatnonzero(curve["threshold"] == threshold)[0])
    return float(curve["in_scope_acc"][i]), float(curve["oos_recall"][i])


def test_each_operating_point_picks_its_threshold() -> None:
    """By hand (correct in-scope scores 0.9 0.8 0.7 0.6 0.3; accepted oos scores 0.65 0.4 0.35 0.2):
    t=0.3: in-scope 5/6, recall 1/4; t=0.4: 4/6, 2/4; t=0.5: 4/6, 3/4; t=0.7: 3/6, 4/4."""
    assert _point(0.5) == pytest.approx((4 / 6, 3 / 4)) and _point(0.7) == pytest.approx((3 / 6, 1.0))
    assert choose_threshold(SCORES, ARGMAX, TARGETS, OOS, "balanced") == 0.7  # mean 0.75, the best
    # accuracy over all 10: 4 + 3 = 7 at t=0.5, 0.6 and 0.7 -> the lowest wins the tie
    assert choose_threshold(SCORES, ARGMAX, TARGETS, OOS, "accuracy") == 0.5
    assert choose_threshold(SCORES, ARGMAX, TARGETS, OOS, "in_scope_accuracy", min_oos_recall=0.5) == 0.4
    assert choose_threshold(SCORES, ARGMAX, TARGETS, OOS, "in_scope_accuracy", min_oos_recall=1.0) == 0.7
    assert choose_threshold(SCORES, ARGMAX, TARGETS, OOS, "oos_recall", min_in_scope_accuracy=0.8) == 0.3
    assert choose_threshold(SCORES, ARGMAX, TARGETS, OOS, "oos_recall", min_in_scope_accuracy=0.6) == 0.5


def test_a_constraint_no_threshold_meets_names_the_best_reachable_value() -> None:
    # the fifth query is misclassified: in-scope accuracy cannot pass 5/6
    with pytest.raises(ConfigError, match=r"min_in_scope_accuracy 0.9000 is not reachable.*best in-scope accuracy "
                                          r"is 0.8333"):
        choose_threshold(SCORES, ARGMAX, TARGETS, OOS, "oos_recall", min_in_scope_accuracy=0.9)
    argmax = ARGMAX.copy()
    argmax[TARGETS == OOS] = OOS  # rejected by the class itself: recall 1 at any threshold, so reachable
    assert choose_threshold(SCORES, argmax, TARGETS, OOS, "in_scope_accuracy", min_oos_recall=1.0) == -np.inf
    with pytest.raises(ConfigError, match="operating_point"):
        choose_threshold(SCORES, ARGMAX, TARGETS, OOS, "recall")


def test_detection_metrics_match_sklearn_with_ties() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    targets = rng.integers(0, 5, 500)
    scores = np.round(rng.normal(size=500) + (targets != 4), 1)  # rounded: many ties
    argmax = np.where(rng.random(500) < 0.9, targets, rng.integers(0, 5, 500))
    got = detection_metrics(scores, argmax, targets, 4)
    ranked = np.where(argmax == 4, -1e9, scores)  # a query predicted as oos is rejected whatever its score
    assert got["auroc"] == pytest.approx(roc_auc_score(targets != 4, ranked), abs=1e-12)
    assert got["aupr_in"] == pytest.approx(average_precision_score(targets != 4, ranked), abs=1e-12)
    assert got["aupr_out"] == pytest.approx(average_precision_score(targets == 4, -ranked), abs=1e-12)
    # FPR at 95 % TPR by hand: accept the top-scored in-scope 95 %, count the oos queries at or above that score
    cut = np.sort(ranked[targets != 4])[::-1][int(np.ceil(0.95 * (targets != 4).sum())) - 1]
    assert got["fpr_at_95_tpr"] == pytest.approx(float((ranked[targets == 4] >= cut).mean()))


def test_mahalanobis_ranks_far_points_below_cluster_points() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 5
    targets = np.repeat([0, 1, 2], 50)
    train = centres[targets] + rng.normal(size=(150, 8))
    stats = OosStats.fit(np.vstack([train, rng.normal(size=(20, 8)) * 20]), np.r_[targets, [OOS] * 20], OOS)
    assert stats.means.shape == (3, 8)  # the out-of-scope queries are no class of their own
    near = stats.scores(centres + 0.1)
    far = stats.scores(centres.mean(0, keepdims=True) + 30)
    assert near.min() > far.max()
    # the score is minus the squared distance to the nearest mean under the shared precision
    z = centres[1] + 0.1
    want = min(float((z - m) @ stats.precision @ (z - m)) for m in stats.means)
    assert stats.scores(z[None])[0] == pytest.approx(-want)


def _datamodule(tmp_path: Path) -> IntentDataModule:
    files = write_splits(tmp_path)
    return IntentDataModule(data_dir=str(tmp_path), train_file=str(files["train"]), val_file=str(files["val"]),
                            test_file=str(files["test"]), backbone="scratch", wordpiece_vocab_size=200,
                            batch_size=8)


def _module(dm: IntentDataModule, **kwargs) -> IntentModule:
    net = IntentClassifier(dm.num_labels, dm.backbone, dm.vocab_size, dm.max_length, hidden_size=32, num_layers=1,
                           num_heads=2, dropout=0.0)
    kwargs.setdefault("labels", dm.labels)
    return IntentModule(net=net, tokenizer_json=dm.tokenizer_json, optimizer=lambda p: torch.optim.AdamW(p, lr=3e-3),
                        **kwargs)


def test_mahalanobis_fit_test_export_and_artifact_agree(tmp_path: Path) -> None:
    """Stats from the training epoch land in the checkpoint buffers and in oos_stats.npz; the test report adds
    the threshold-free figures and the curve PNG; the artifact decides as the module does on the same texts."""
    torch.manual_seed(0)
    dm = _datamodule(tmp_path)
    module = _module(dm, score="mahalanobis", operating_point="in_scope_accuracy", min_oos_recall=0.5)
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=str(tmp_path), max_epochs=3,
                      num_sanity_val_steps=0)
    trainer.fit(module, dm)
    assert module.oos_precision.abs().sum() > 0
    results = trainer.test(module, dm, verbose=False)[0]
    assert {"test/oos_auroc", "test/oos_aupr_in", "test/oos_aupr_out", "test/oos_fpr_at_95_tpr"} <= set(results)
    assert 0.0 <= results["test/oos_auroc"] <= 1.0
    assert (tmp_path / "oos_curve.png").stat().st_size > 1000

    texts = [r.text for r in dm.records["test"]] + ["what a lovely day", "totally unrelated words here"]
    encoder = TextEncoder(module.tokenizer_json, module.net.max_length)
    ids, mask = encoder.pad(encoder.encode(texts))
    module.eval()
    with torch.no_grad():
        logits, pooled = module.net.logits_and_embedding(torch.from_numpy(ids), torch.from_numpy(mask))
    # a threshold inside the scores' range, so the score (not only the oos class) decides some rows
    module.oos_threshold.fill_(float(np.median(module.decide(logits, pooled, threshold=None).score)))
    ours = module.decide(logits, pooled)
    assert 0 < ours.in_scope.sum() < len(texts)
    result = export_artifact(module.export_spec(), tmp_path / "artifact", domain="nlp")
    assert (result.path / "oos_stats.npz").is_file()
    predictor = IntentPredictor.from_artifact(result.path)
    assert predictor.metadata.score == "mahalanobis" and predictor.metadata.operating_point == "in_scope_accuracy"
    out = predictor.outputs(texts)
    theirs = predictor.decide(out["logits"], out["sentence_embedding"])
    np.testing.assert_allclose(theirs.score, ours.score, rtol=1e-3, atol=1e-3)
    assert theirs.in_scope.tolist() == ours.in_scope.tolist()
    assert [r["in_scope"] for r in predictor.predict(texts)] == ours.in_scope.tolist()


def test_unmet_constraint_fails_test_and_export_after_a_checkpoint(tmp_path: Path) -> None:
    dm = _datamodule(tmp_path)
    labels = ["password", "refund", "track", "oos"]  # oos at index 3, as in TARGETS
    module = _module(dm, labels=labels, operating_point="oos_recall", min_in_scope_accuracy=0.9)
    raw = Decisions(ARGMAX, SCORES, SCORES, np.ones(10, bool), ARGMAX)
    threshold = module._choose_threshold(raw, torch.from_numpy(TARGETS))
    assert threshold == -np.inf  # the nearest: the best in-scope accuracy, for now
    with pytest.raises(ConfigError, match="best in-scope accuracy is 0.8333"):
        module.export_spec()
    restored = _module(dm, labels=labels, operating_point="oos_recall", min_in_scope_accuracy=0.9)
    restored.restore_checkpoint_extras(module.checkpoint_extras())  # what a checkpoint carries
    with pytest.raises(ConfigError, match="best in-scope accuracy is 0.8333"):
        restored.check_operating_point()
    # control: a later epoch that meets the constraint clears it
    module.min_in_scope_accuracy = 0.8
    assert module._choose_threshold(raw, torch.from_numpy(TARGETS)) == 0.3
    module.export_spec()
    with pytest.raises(ConfigError, match="model.operating_point"):
        _module(dm, operating_point="recall")
