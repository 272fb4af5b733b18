"""``trident-audio``: the shared Trident command line for speech recognition."""

from __future__ import annotations

from trident_core.domain import DomainSpec

DOMAIN = DomainSpec(
    name="audio",
    module_class="trident_audio.module:SpeechModule",
    datamodule_class="trident_audio.data:SpeechDataModule",
    config_package="trident_audio.configs",
    monitor="val/wer",
    monitor_mode="min",
    infer="trident_audio.export:infer",
    demo_inputs="trident_audio.defaults:demo_inputs",
    demo_metrics=("test/wer", "test/cer"),
    # each value declared once, in the data section: the rate the audio is resampled to is the rate the net's
    # features are built for; the tokenizer and the word LM come from the training transcripts
    links=(
        ("data.sample_rate", "model.net.init_args.sample_rate"),
        ("data.tokenizer_config", "model.tokenizer"),
        ("data.train_texts", "model.lm_texts"),
    ),
    description="speech recognition (CTC, Conformer): WAV/FLAC manifests to transcripts",
    serve="trident_audio.serve:Serving",
    quantize_check="trident_audio.export:quantize_check",
    speak="trident_audio.defaults:speak",
    infer_options="trident_audio.infer_options:add_infer_options",  # infer --decoder/--beam_size/--lm_weight/...
)


def main(args: list[str] | None = None) -> None:
    """Entry point of ``trident-audio`` and ``python -m trident_audio``."""
    from trident_core.entry import main as run  # light: `--help` imports neither torch nor Lightning

    run(DOMAIN, args)
