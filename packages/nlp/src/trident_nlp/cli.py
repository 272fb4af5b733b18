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
    # what the data knows at construction: the encoder's data-given arguments, the labels and the tokenizer
    links=(
        ("data.labels", "model.labels"),
        ("data.oos_label", "model.oos_label"),
        ("data.tokenizer_json", "model.tokenizer_json"),
        ("data.num_labels", "model.net.init_args.num_labels"),
        ("data.backbone", "model.net.init_args.backbone"),
        ("data.vocab_size", "model.net.init_args.vocab_size"),
        ("data.max_length", "model.net.init_args.max_length"),
    ),
    description="intent classification with out-of-scope detection (Hugging Face transformers)",
    serve="trident_nlp.serve:Serving",
    quantize_check="trident_nlp.export:quantize_check",
    demo_commands="trident_nlp.defaults:demo_commands",
)


def main(args: list[str] | None = None) -> None:
    """Entry point of ``trident-nlp`` and ``python -m trident_nlp``."""
    from trident_core.entry import main as run  # light: `--help` imports neither torch nor Lightning

    run(DOMAIN, args)
