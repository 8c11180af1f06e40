"""Tabular decoder: one query per column -> numeric regression and per-column class logits."""

from __future__ import annotations

import torch
from torch import nn

from modalmerge.models.encoders.tabular import ColumnMixer
from modalmerge.models.layers import Decoder, TokenProvenance
from modalmerge.models.registry import register_decoder


@register_decoder("tabular", "mlp")
class TabularDecoder(Decoder):
    """Column queries, mixed by MLP-Mixer blocks, read out per column.

    Parameters
    ----------
    output_shape : tuple of int
        ``(n_numeric + n_categorical,)``.
    dim : int
        Query size.
    n_numeric : int
        Leading numeric columns (regressed).
    categorical_cardinalities : list of int
        Classes of each trailing categorical column (one classification head each).

    The prediction is ``{"numeric": (B, n_numeric), "categorical": [(B, card_i), ...]}``
    (logits for the categorical columns).
    """

    def __init__(
        self,
        output_shape,
        dim: int,
        n_numeric: int,
        categorical_cardinalities=(),
        n_layers: int = 1,
        dropout: float = 0.0,
        labels: list[str] | None = None,
    ):
        super().__init__()
        cards = [int(c) for c in categorical_cardinalities]
        self.n_numeric = n_numeric
        self.n_queries = n_numeric + len(cards)
        if tuple(output_shape) != (self.n_queries,) or self.n_queries == 0:
            raise ValueError(
                f"tabular target shape {tuple(output_shape)} does not match n_numeric={n_numeric} "
                f"and {len(cards)} categorical columns"
            )
        self.labels = None if labels is None else tuple(str(x) for x in labels)
        self.query = nn.Parameter(torch.randn(self.n_queries, dim) * 0.02)
        self.mixers = nn.Sequential(
            *(ColumnMixer(self.n_queries, dim, dropout) for _ in range(n_layers))
        )
        self.norm = nn.LayerNorm(dim)
        if n_numeric:
            self.numeric_weight = nn.Parameter(torch.randn(n_numeric, dim) * dim**-0.5)
            self.numeric_bias = nn.Parameter(torch.zeros(n_numeric))
        self.categorical_heads = nn.ModuleList(nn.Linear(dim, c) for c in cards)

    def queries(self, batch_size: int, target=None, time_offset=None) -> torch.Tensor:
        """Column queries (B, n_columns, dim)."""
        return self.query.unsqueeze(0).expand(batch_size, -1, -1)

    def forward(self, conditioned: torch.Tensor, target=None) -> dict:
        """Conditioned queries (B, n_columns, dim) -> ``{"numeric", "categorical"}``."""
        h = self.norm(self.mixers(conditioned))
        b = h.shape[0]
        if self.n_numeric:
            numeric = (h[:, : self.n_numeric] * self.numeric_weight).sum(-1) + self.numeric_bias
        else:
            numeric = h.new_zeros(b, 0)
        categorical = [
            head(h[:, self.n_numeric + i]) for i, head in enumerate(self.categorical_heads)
        ]
        return {"numeric": numeric, "categorical": categorical}

    def query_provenance(self) -> TokenProvenance:
        """``column`` provenance of the target queries."""
        return TokenProvenance(
            "column", self.n_queries, labels=self.labels, input_shape=(self.n_queries,)
        )
