"""Time-series decoders: queries per time point or per ROI -> (B, T, channels)."""

from __future__ import annotations

import torch
from torch import nn

from modalmerge.models.layers import (
    Decoder,
    SequenceMixer,
    TokenProvenance,
    sample_shape,
    sinusoidal_embedding,
)
from modalmerge.models.registry import register_decoder


class TimeSeriesDecoder(Decoder):
    """Learned queries, mixed by a sequence model, read out as a (T, channels) window.

    Parameters
    ----------
    output_shape : tuple of int
        ``(T, channels)``.
    dim : int
        Query size.
    mixer : {"lstm", "transformer"}
        Sequence model over the conditioned queries.
    query : {"time", "roi"}
        ``time``: one query per time point, each with a sinusoidal embedding of its
        absolute time ``time_offset + t`` (in samples), read out to the channels;
        ``roi``: one query per channel, read out to its whole window; the window's
        ``time_offset`` is added to every query as a sinusoidal embedding.
    n_layers, n_heads, dropout
        Sequence-model sizes. ``n_layers: 0``: no sequence model, each conditioned
        query is read out on its own (a LayerNorm, then the readout): no information
        passes between queries after the cross-attention, so with ``query: roi`` a
        target ROI's prediction depends on the condition only through its own
        attention weights, and those weights say where its information came from.
    """

    fixed_options = ("mixer",)  # the registered subclasses choose it

    def __init__(
        self,
        output_shape,
        dim: int,
        mixer: str = "transformer",
        query: str = "time",
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.0,
        labels: list[str] | None = None,
    ):
        super().__init__()
        if query not in ("time", "roi"):
            raise ValueError(f"query must be 'time' or 'roi', got {query!r}")
        self.output_shape = sample_shape(output_shape, 2, "time_series")
        n_time, n_channels = self.output_shape
        self.labels = None if labels is None else tuple(str(x) for x in labels)
        self.query_kind = query
        self.dim = dim
        self.n_queries = n_time if query == "time" else n_channels
        # ROI queries differ only by their learned part: start them well apart (unit
        # scale, like the sinusoidal time codes) so their attention can separate early.
        scale = 1.0 if query == "roi" else 0.02
        self.query = nn.Parameter(torch.randn(self.n_queries, dim) * scale)
        if not isinstance(n_layers, int) or n_layers < 0:
            raise ValueError(f"n_layers must be an integer >= 0, got {n_layers!r}")
        # n_layers 0: no mixing across queries (see the class docstring)
        self.mixer = (
            nn.LayerNorm(dim)
            if n_layers == 0
            else SequenceMixer(mixer, dim, n_heads, n_layers, dropout)
        )
        self.readout = nn.Linear(dim, n_channels if query == "time" else n_time)

    def queries(self, batch_size: int, target=None, time_offset=None) -> torch.Tensor:
        """Queries (B, n_queries, dim) at absolute times ``time_offset`` (B,) long, default 0."""
        device = self.query.device
        offset = (
            torch.zeros(batch_size, dtype=torch.long, device=device)
            if time_offset is None
            else time_offset.to(device)
        )
        if self.query_kind == "time":
            times = offset[:, None] + torch.arange(self.n_queries, device=device)  # (B, T)
            return self.query + sinusoidal_embedding(times, self.dim).to(self.query.dtype)
        return self.query + sinusoidal_embedding(offset, self.dim).to(self.query.dtype)[:, None]

    def forward(self, conditioned: torch.Tensor, target=None) -> torch.Tensor:
        """Conditioned queries (B, n_queries, dim) -> series (B, T, channels)."""
        out = self.readout(self.mixer(conditioned))
        return out if self.query_kind == "time" else out.transpose(1, 2)

    def query_provenance(self) -> TokenProvenance:
        """``time`` or ``roi`` provenance of the target queries."""
        if self.query_kind == "time":
            return TokenProvenance("time", self.n_queries, input_shape=self.output_shape)
        return TokenProvenance(
            "roi", self.n_queries, labels=self.labels, input_shape=self.output_shape
        )


@register_decoder("time_series", "lstm")
class LSTMTimeSeriesDecoder(TimeSeriesDecoder):
    """Bidirectional-LSTM time-series decoder (see :class:`TimeSeriesDecoder`)."""

    def __init__(self, output_shape, dim: int, **options):
        super().__init__(output_shape, dim, mixer="lstm", **options)


@register_decoder("time_series", "transformer")
class TransformerTimeSeriesDecoder(TimeSeriesDecoder):
    """Transformer time-series decoder (see :class:`TimeSeriesDecoder`)."""

    def __init__(self, output_shape, dim: int, **options):
        super().__init__(output_shape, dim, mixer="transformer", **options)
