"""Plain ``nn.Module``s: a transformer encoder with a pooled classification head."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from trident_nlp.text import SCRATCH, pretrained_location


class IntentClassifier(nn.Module):
    """Encoder + masked mean pooling + linear head; ``forward(input_ids, attention_mask) -> logits``.

    ``token_type_ids`` are always zeros (single-sentence input), so they stay out of the exported graph.

    Args:
        encoder: A Hugging Face encoder (``BertModel``-like) returning ``last_hidden_state``.
        hidden_size: Width of the encoder's output.
        num_labels: Number of intents (``oos`` included when the data has it).
        dropout: Dropout before the head.
    """

    def __init__(self, encoder: nn.Module, hidden_size: int, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))


def scratch_encoder(
    vocab_size: int, hidden_size: int = 256, num_layers: int = 4, num_heads: int = 4, max_positions: int = 512
) -> nn.Module:
    """A randomly initialised BERT encoder (the offline fallback and the test model)."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=4 * hidden_size,
        max_position_embeddings=max_positions,
    )
    config._attn_implementation = "eager"  # plain matmul attention: exports to ONNX with exact parity
    return BertModel(config, add_pooling_layer=False)


def pretrained_encoder(backbone: str) -> nn.Module:
    """A pretrained encoder from a local folder or hub id (``all-minilm-l6-v2`` found through its package)."""
    from transformers import AutoModel

    location = pretrained_location(backbone)
    encoder = AutoModel.from_pretrained(
        location,
        local_files_only=Path(location).is_dir(),
        attn_implementation="eager",
        add_pooling_layer=False,
    )
    # from_pretrained returns eval mode, and Lightning >= 2.6 keeps a module's mode at fit start: without this,
    # dropout would stay off during fine-tuning.
    return encoder.train()


def build_classifier(
    backbone: str,
    num_labels: int,
    vocab_size: int,
    hidden_size: int = 256,
    num_layers: int = 4,
    num_heads: int = 4,
    max_positions: int = 512,
    dropout: float = 0.1,
) -> IntentClassifier:
    """An :class:`IntentClassifier` on a resolved pretrained backbone or a scratch BERT of the given size."""
    if backbone == SCRATCH:
        encoder = scratch_encoder(vocab_size, hidden_size, num_layers, num_heads, max_positions)
    else:
        encoder = pretrained_encoder(backbone)
    hidden = int(encoder.config.hidden_size)  # type: ignore[union-attr,arg-type]
    return IntentClassifier(encoder, hidden, num_labels, dropout)


def tiny_classifier(num_labels: int = 3, vocab_size: int = 100) -> IntentClassifier:
    """A one-layer, 32-wide classifier for tests."""
    return build_classifier(
        SCRATCH, num_labels, vocab_size, hidden_size=32, num_layers=1, num_heads=2, max_positions=64
    )
