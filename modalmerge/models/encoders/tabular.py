"""Tabular encoder: one token per column, numeric and categorical, mixed by a small MLP."""

from __future__ import annotations

import torch
from torch import nn

from modalmerge.models.layers import Encoder, FeedForward, TokenProvenance, sample_shape
from modalmerge.models.registry import register_encoder


class ColumnMixer(nn.Module):
    """An MLP-Mixer block over column tokens: mix across columns, then across features."""

    def __init__(self, n_columns: int, dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.column_mlp = nn.Sequential(
            nn.Linear(n_columns, 2 * n_columns), nn.GELU(), nn.Linear(2 * n_columns, n_columns)
        )
        self.norm2 = nn.LayerNorm(dim)
        self.feature_mlp = FeedForward(dim, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_columns, dim) -> (B, n_columns, dim)."""
        x = x + self.column_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.feature_mlp(self.norm2(x))


@register_encoder("tabular", "mlp")
class TabularEncoder(Encoder):
    """Column tokens: a per-column linear map for numbers, a per-column embedding for codes.

    Parameters
    ----------
    input_shape : tuple of int
        ``(n_numeric + n_categorical,)``.
    dim : int
        Token size.
    n_numeric : int
        Leading numeric columns.
    categorical_cardinalities : list of int
        Number of categories of each trailing categorical column (codes
        ``0..card-1``; a negative code means "missing" and has its own embedding).
    n_layers : int
        Mixer blocks.
    labels : list of str, optional
        Column names, reported in the provenance.
    """

    def __init__(
        self,
        input_shape,
        dim: int,
        n_numeric: int,
        categorical_cardinalities=(),
        n_layers: int = 1,
        dropout: float = 0.0,
        labels: list[str] | None = None,
    ):
        super().__init__()
        cards = [int(c) for c in categorical_cardinalities]
        n_columns = n_numeric + len(cards)
        (width,) = sample_shape(input_shape, 1, "tabular")
        if width != n_columns or n_columns == 0:
            raise ValueError(
                f"tabular input has {width} columns but n_numeric={n_numeric} and "
                f"{len(cards)} categorical columns were given"
            )
        self.n_numeric = n_numeric
        self.labels = None if labels is None else tuple(str(x) for x in labels)
        if n_numeric:
            self.numeric_weight = nn.Parameter(torch.randn(n_numeric, dim) * 0.1)
            self.numeric_bias = nn.Parameter(torch.zeros(n_numeric, dim))
        if cards:
            # rows 0..sum(cards)-1: the categories; then one "missing" row per column
            offsets = torch.tensor([0, *cards[:-1]]).cumsum(0)
            missing = sum(cards) + torch.arange(len(cards))
            self.register_buffer("offsets", offsets, persistent=False)
            self.register_buffer("missing_rows", missing, persistent=False)
            self.category_embedding = nn.Embedding(sum(cards) + len(cards), dim)
        self.n_columns = n_columns
        self.mixers = nn.Sequential(
            *(ColumnMixer(n_columns, dim, dropout) for _ in range(n_layers))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Table rows (B, n_columns) -> column tokens (B, n_columns, dim)."""
        parts = []
        if self.n_numeric:
            numeric = x[:, : self.n_numeric].unsqueeze(-1)  # (B, n_num, 1)
            parts.append(numeric * self.numeric_weight + self.numeric_bias)
        if self.n_columns > self.n_numeric:
            codes = x[:, self.n_numeric :].round().long()
            rows = torch.where(codes < 0, self.missing_rows, codes + self.offsets)
            parts.append(self.category_embedding(rows))
        return self.mixers(torch.cat(parts, dim=1))

    def token_provenance(self, input_shape=None) -> TokenProvenance:
        """``column`` provenance: token i is column i."""
        return TokenProvenance(
            "column", self.n_columns, labels=self.labels, input_shape=(self.n_columns,)
        )
