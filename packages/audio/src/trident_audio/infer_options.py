"""``trident-audio infer`` decoding options: the settings an artifact stored (``decoder``, ``beam_size``,
``lm_weight``, ``word_bonus`` in ``metadata.json``), overridden for one run.

Declared through ``DomainSpec.infer_options`` (the core adds them to ``infer``'s parser and passes the given ones
to :func:`trident_audio.export.infer`); :func:`decoding_overrides` refuses what the artifact cannot honour. Light
(argparse only): ``infer --help`` imports it.
"""

from __future__ import annotations

import argparse
from typing import Any

from trident_core.errors import ConfigError

DECODERS = ("greedy", "beam", "flashlight")
LM_OPTIONS = {"lm_weight": "--lm_weight", "word_bonus": "--word_bonus"}
BEAM_OPTIONS = {"beam_size": "--beam_size", **LM_OPTIONS}


def add_infer_options(group: argparse._ArgumentGroup) -> None:
    """``--decoder``, ``--beam_size`` (alias ``--beam_width``), ``--lm_weight``, ``--word_bonus`` (alias
    ``--word_score``, flashlight's name); ``None``: as the artifact stored it."""
    group.add_argument("--decoder", choices=DECODERS, default=None,
                       help="greedy | beam (the own prefix beam search, with the artifact's LM if it has one) | "
                       "flashlight (torchaudio's ctc_decoder over the artifact's ARPA LM; the trident-audio"
                       "[flashlight] extra)")
    group.add_argument("--beam_size", "--beam_width", dest="beam_size", type=int, default=None,
                       help="beam width (beam, flashlight)")
    group.add_argument("--lm_weight", type=float, default=None,
                       help="weight of the artifact's LM (beam, flashlight; needs an LM in the artifact)")
    group.add_argument("--word_bonus", "--word_score", dest="word_bonus", type=float, default=None,
                       help="score added per word with the LM (flashlight's word_score; needs an LM in the artifact)")


def check_decoder(decoder: str, key: str = "model.decoder") -> str:
    """``decoder`` when it is one of :data:`DECODERS` (and, for flashlight, installed); else a ConfigError naming
    ``key``."""
    if decoder not in DECODERS:
        raise ConfigError(f"{key} must be one of {DECODERS}, got {decoder!r}")
    if decoder == "flashlight":
        from trident_audio.flashlight import check_available

        check_available(key)
    return decoder


def decoding_overrides(stored: str, lm: Any, source: str, decoder: str | None = None, **given: Any) -> dict[str, Any]:
    """The metadata fields an ``infer`` run replaces: ``decoder`` (default ``stored``) and the given ones of
    :data:`BEAM_OPTIONS` (``None``: not given).

    Args:
        stored: The artifact's decoder.
        lm: The artifact's LM (``None`` without one).
        source: The artifact folder, for messages.

    Raises:
        ConfigError: an unknown decoder, flashlight not installed or without an ARPA LM in the artifact, a beam
            option with the greedy decoder, an LM option without an LM, a beam size below 1.
    """
    used = check_decoder(decoder or stored, "--decoder")
    given = {key: value for key, value in given.items() if value is not None}
    if unknown := set(given) - set(BEAM_OPTIONS):
        raise ConfigError(f"unknown decoding option(s) {sorted(unknown)}; known: {sorted(BEAM_OPTIONS)}")
    if used == "greedy" and given:
        raise ConfigError(f"{', '.join(BEAM_OPTIONS[k] for k in given)}: for --decoder beam or flashlight only, and "
                          f"this run decodes greedily{' (as the artifact stored it)' if decoder is None else ''}; "
                          "add --decoder beam")
    if given.get("beam_size", 1) < 1:
        raise ConfigError(f"--beam_size must be >= 1, got {given['beam_size']}")
    if lm is None and (lm_given := [LM_OPTIONS[k] for k in given if k in LM_OPTIONS]):
        raise ConfigError(f"{source}: the artifact has no LM (metadata.json lm_file is null), so "
                          f"{', '.join(lm_given)} has nothing to weigh; export a model fitted with an LM "
                          "(--model.lm_order, --model.lm_path or --model.lm_text)")
    if used == "flashlight" and not hasattr(lm, "to_arpa"):
        held = "no LM" if lm is None else "the word LM counted from the training transcripts, not an ARPA model"
        raise ConfigError(f"{source}: --decoder flashlight needs an ARPA LM in the artifact and this one has {held}; "
                          "export a model fitted with --model.lm_path FILE.arpa or --model.lm_text FILE.txt, or "
                          "use --decoder beam")
    return {"decoder": used, **given}
