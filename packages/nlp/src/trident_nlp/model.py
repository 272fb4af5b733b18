"""Plain ``nn.Module``s: a transformer encoder with a pooled classification head."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from trident_core.errors import ConfigError
from trident_nlp.text import SCRATCH, pretrained_location

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class IntentClassifier(nn.Module):
    """Encoder + masked mean pooling + linear head; ``forward(input_ids, attention_mask) -> logits``.

    Built from plain values, so a config names it with ``class_path`` and a checkpoint rebuilds it from its
    hyperparameters. Under the CLI, ``num_labels``, ``backbone``, ``vocab_size`` and ``max_length`` are linked
    from the data; the ``IntentModule`` reads them back from here. ``token_type_ids`` are always zeros
    (single-sentence input), so they stay out of the exported graph.

    Args:
        num_labels: Number of intents (``oos`` included when the data has it).
        backbone: Resolved backbone: ``scratch``, ``all-minilm-l6-v2``, a local folder or a hub id.
        vocab_size: Rows of a scratch encoder's embedding: the tokenizer's vocabulary size (ignored for a
            pretrained backbone, which brings its own).
        max_length: Longest input in tokens (the tokenizer truncates to it; the artifact keeps it).
        hidden_size: Width of a scratch encoder.
        num_layers: Layers of a scratch encoder.
        num_heads: Attention heads of a scratch encoder.
        dropout: Dropout before the head.
        encoder_dropout: Hidden and attention dropout inside a scratch encoder (BERT's 0.1; ignored for a
            pretrained backbone, which keeps its own). 0 with ``dropout: 0`` makes training draw no random masks
            (the DDP equivalence test needs that: ranks would draw different ones).
    """

    def __init__(
        self,
        num_labels: int,
        backbone: str = SCRATCH,
        vocab_size: int | None = None,
        max_length: int = 64,
        hidden_size: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        dropout: float = 0.1,
        encoder_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if num_labels < 2:
            raise ConfigError(f"model.net.init_args.num_labels must be >= 2, got {num_labels}")
        if backbone == SCRATCH:
            if vocab_size is None:
                raise ConfigError("a scratch encoder needs model.net.init_args.vocab_size (linked from the data)")
            self.encoder = scratch_encoder(
                vocab_size, hidden_size, num_layers, num_heads, max(512, max_length), encoder_dropout
            )
        else:
            self.encoder = pretrained_encoder(backbone)
        positions = int(getattr(self.encoder.config, "max_position_embeddings", max_length))
        if max_length > positions:
            raise ConfigError(f"data.max_length {max_length} exceeds the {positions} positions of backbone "
                              f"{backbone!r}; lower data.max_length")
        self.num_labels = num_labels
        self.backbone = backbone
        self.max_length = max_length
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(int(self.encoder.config.hidden_size), num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.logits_and_embedding(input_ids, attention_mask)[0]

    def logits_and_embedding(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the pooled embedding they come from (what the ``mahalanobis`` out-of-scope score uses)."""
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled)), pooled


class WithEmbedding(nn.Module):
    """Exports both outputs of :meth:`IntentClassifier.logits_and_embedding` (``logits``, ``sentence_embedding``)."""

    def __init__(self, net: IntentClassifier) -> None:
        super().__init__()
        # the classifier's own children under their own names: weights.safetensors keeps the classifier's keys
        self.encoder, self.dropout, self.head = net.encoder, net.dropout, net.head
        self.backbone, self.max_length = net.backbone, net.max_length
        self._logits_and_embedding = net.logits_and_embedding

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._logits_and_embedding(input_ids, attention_mask)


def scratch_encoder(
    vocab_size: int, hidden_size: int = 256, num_layers: int = 4, num_heads: int = 4, max_positions: int = 512,
    dropout: float = 0.1,
) -> PreTrainedModel:
    """A randomly initialised BERT encoder (the offline fallback and the test model)."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=4 * hidden_size,
        max_position_embeddings=max_positions,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    config._attn_implementation = "eager"  # plain matmul attention: exports to ONNX with exact parity
    return BertModel(config, add_pooling_layer=False)


def pretrained_encoder(backbone: str) -> PreTrainedModel:
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


def tiny_classifier(num_labels: int = 3, vocab_size: int = 100, max_length: int = 32) -> IntentClassifier:
    """A one-layer, 32-wide scratch classifier for tests and examples."""
    return IntentClassifier(num_labels, SCRATCH, vocab_size, max_length, hidden_size=32, num_layers=1, num_heads=2)
