"""``trident-nlp``: the shared Trident CLI for intent classification."""

from __future__ import annotations

from trident_core.domain import DomainSpec

DOMAIN = DomainSpec(
    name="nlp",
    module_class="trident_nlp.module:IntentModule",
    datamodule_class="trident_nlp.data:IntentDataModule",
    config_package="trident_nlp.configs",
    monitor="val/acc",
    monitor_mode="max",
    infer="trident_nlp.export:infer",
    demo_inputs="trident_nlp.defaults:demo_inputs",
    demo_metrics=("test/acc", "test/macro_f1", "test/in_scope_acc", "test/oos_recall"),
    links=(
        ("data.labels", "model.labels"),
        ("data.backbone", "model.backbone"),
        ("data.vocab_size", "model.vocab_size"),
        ("data.oos_label", "model.oos_label"),
        ("data.max_length", "model.max_length"),
    ),
    description="intent classification with out-of-scope detection (Hugging Face transformers)",
)


def main(args: list[str] | None = None) -> None:
    """Entry point of ``trident-nlp`` and ``python -m trident_nlp``."""
    from trident_core.entry import main as run  # light: `--help` imports neither torch nor Lightning

    run(DOMAIN, args)
