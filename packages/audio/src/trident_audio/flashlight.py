"""``--model.decoder flashlight``: torchaudio's ``ctc_decoder`` (flashlight-text, KenLM bundled) as a beam search.

Optional: ``pip install trident-audio[flashlight]`` (wheels for CPython 3.11 and 3.12). It decodes with a lexicon
(flashlight's lexicon decoder only emits lexicon words): the words of the ARPA LM (``--model.lm_path`` or
``--model.lm_text``) spelled in the character vocabulary, the space token playing flashlight's word separator.
The LM is written as an ARPA file (:meth:`~trident_audio.arpa.ArpaLM.to_arpa`) that KenLM reads; ``lm_weight`` and
``word_bonus`` are flashlight's ``lm_weight`` and ``word_score``. Character tokenizers only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from trident_core.errors import ConfigError

SEPARATOR = "|"  # flashlight's word separator token stands for the vocabulary's space


def available() -> bool:
    """Whether flashlight-text is installed (the ``flashlight`` extra)."""
    try:
        import flashlight.lib.text.decoder  # noqa: F401
    except ImportError:
        return False
    return True


def check_available(key: str = "model.decoder") -> None:
    """A ConfigError naming ``key`` (the option that asked for flashlight) unless flashlight-text is installed."""
    if not available():
        raise ConfigError(f"{key} 'flashlight' needs flashlight-text: pip install 'trident-audio[flashlight]' "
                          f"(CPython 3.11 or 3.12), or use {key} beam (the same LM, no extra)")


class FlashlightDecoder:
    """A ``torchaudio.models.decoder.ctc_decoder`` over an ARPA LM and a character vocabulary.

    Args:
        tokens: Token strings by id (``" "`` is the word boundary).
        blank: Id of the CTC blank.
        lm: An :class:`~trident_audio.arpa.ArpaLM` (anything with ``to_arpa()`` and ``ngrams``).
        beam_size: Hypotheses kept per frame.
        lm_weight: Weight of the LM score.
        word_bonus: Added per emitted word.
    """

    def __init__(self, tokens: list[str], blank: int, lm: Any, *, beam_size: int = 8, lm_weight: float = 0.5,
                 word_bonus: float = 0.0) -> None:
        check_available()
        if not hasattr(lm, "to_arpa"):
            raise ConfigError("model.decoder 'flashlight' needs an ARPA LM: pass --model.lm_path FILE.arpa or "
                              "--model.lm_text FILE.txt (the LM counted from the transcripts is not an ARPA model)")
        if " " not in tokens or any(t.startswith("\u2581") for t in tokens):
            raise ConfigError("model.decoder 'flashlight' supports character tokenizers (data.tokenizer char)")
        from torchaudio.models.decoder import ctc_decoder

        names = [SEPARATOR if t == " " else t for t in tokens]
        self.separator = tokens.index(" ")
        spellable = set(tokens) - {" ", tokens[blank]}
        words = [w for (w,) in lm.ngrams[0] if w not in ("<s>", "</s>", "<unk>") and set(w) <= spellable]
        self._dir = tempfile.TemporaryDirectory(prefix="trident-flashlight-")
        folder = Path(self._dir.name)
        (folder / "lm.arpa").write_text(lm.to_arpa())
        (folder / "lexicon.txt").write_text("".join(f"{w}\t{' '.join(w)} {SEPARATOR}\n" for w in words))
        self.decoder = ctc_decoder(
            lexicon=str(folder / "lexicon.txt"), tokens=names, lm=str(folder / "lm.arpa"), nbest=1,
            beam_size=beam_size, lm_weight=lm_weight, word_score=word_bonus, sil_score=0.0, log_add=True,
            blank_token=names[blank], sil_token=SEPARATOR, unk_word="<unk>",
        )

    def __call__(self, log_probs: np.ndarray, length: int | None = None) -> str:
        """The best word sequence of ``(frames, vocab)`` log-probabilities, as normalised text."""
        import torch

        lp = np.asarray(log_probs, dtype=np.float32)[: length if length is not None else len(log_probs)]
        # The lexicon spells each word with a closing separator, and a CTC model has no reason to emit a space after
        # the last word of a recording: without one closing separator frame flashlight drops that word.
        end = np.full((1, lp.shape[1]), -1e4, dtype=np.float32)
        end[0, self.separator] = 0.0
        emissions = torch.from_numpy(np.ascontiguousarray(np.concatenate([lp, end])))[None]
        hyps = self.decoder(emissions, torch.tensor([len(lp) + 1], dtype=torch.int32))
        return " ".join(hyps[0][0].words) if hyps and hyps[0] else ""


def flashlight_decoder(tokens: list[str], blank: int, lm: Any, beam_size: int, lm_weight: float,
                       word_bonus: float) -> FlashlightDecoder:
    """The :class:`FlashlightDecoder` of these settings, built once per LM object (KenLM loads the file once)."""
    if not hasattr(lm, "to_arpa"):  # no LM, or the counted one: FlashlightDecoder says what to pass
        return FlashlightDecoder(tokens, blank, lm, beam_size=beam_size, lm_weight=lm_weight, word_bonus=word_bonus)
    cache: dict[tuple[Any, ...], FlashlightDecoder] = lm.__dict__.setdefault("_flashlight", {})
    key = (tuple(tokens), blank, beam_size, lm_weight, word_bonus)
    if key not in cache:
        cache[key] = FlashlightDecoder(tokens, blank, lm, beam_size=beam_size, lm_weight=lm_weight,
                                       word_bonus=word_bonus)
    return cache[key]
