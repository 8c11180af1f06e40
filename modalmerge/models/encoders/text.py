"""Text encoders: token ids (B, L) -> one token per word position."""

from __future__ import annotations

import torch
from torch import nn

from modalmerge.models.layers import Encoder, SequenceMixer, TokenProvenance, sample_shape
from modalmerge.models.registry import register_encoder
from modalmerge.models.text import PAD_ID


class TextEncoder(Encoder):
    """Word embeddings plus learned positions, mixed by a bidirectional GRU/LSTM.

    Parameters
    ----------
    input_shape : tuple of int
        ``(max_length,)``: the longest id sequence accepted.
    dim : int
        Token size.
    vocab_size : int
        Number of ids (``Tokenizer.vocab_size``); id 0 is padding.
    mixer : {"gru", "lstm", "transformer"}
        Sequence model.
    """

    fixed_options = ("mixer",)  # the registered subclasses choose it

    def __init__(
        self,
        input_shape,
        dim: int,
        vocab_size: int,
        mixer: str = "gru",
        n_layers: int = 1,
        n_heads: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        (self.max_length,) = sample_shape(input_shape, 1, "text")
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        self.position = nn.Parameter(torch.randn(self.max_length, dim) * 0.02)
        self.mixer = SequenceMixer(mixer, dim, n_heads, n_layers, dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids (B, L) long -> tokens (B, L, dim)."""
        tokens = self.embed(ids) + self.position[: ids.shape[1]]
        return self.mixer(tokens, self.padding_mask(ids))

    def padding_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) True at real words; the first position always counts (no empty rows)."""
        mask = ids != PAD_ID
        mask[:, 0] = True
        return mask

    def token_provenance(self, input_shape=None) -> TokenProvenance:
        """``word`` provenance: token i is position i of the id sequence."""
        shape = (self.max_length,) if input_shape is None else sample_shape(input_shape, 1, "text")
        return TokenProvenance("word", shape[0], input_shape=shape)


@register_encoder("text", "gru")
class GRUTextEncoder(TextEncoder):
    """Bidirectional-GRU text encoder (see :class:`TextEncoder`)."""

    def __init__(self, input_shape, dim: int, vocab_size: int, **options):
        super().__init__(input_shape, dim, vocab_size, mixer="gru", **options)


@register_encoder("text", "lstm")
class LSTMTextEncoder(TextEncoder):
    """Bidirectional-LSTM text encoder (see :class:`TextEncoder`)."""

    def __init__(self, input_shape, dim: int, vocab_size: int, **options):
        super().__init__(input_shape, dim, vocab_size, mixer="lstm", **options)
