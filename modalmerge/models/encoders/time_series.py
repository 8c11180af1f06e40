"""Time-series encoders: (B, T, channels) -> one token per time point or per channel (ROI)."""

from __future__ import annotations

import torch
from torch import nn

from modalmerge.models.layers import (
    Encoder,
    SequenceMixer,
    TokenProvenance,
    sample_shape,
    sinusoidal_embedding,
)
from modalmerge.models.registry import register_encoder

TOKENIZATIONS = ("time", "roi")


class TimeSeriesEncoder(Encoder):
    """Embed a multichannel time series as tokens and mix them with a sequence model.

    Parameters
    ----------
    input_shape : tuple of int
        ``(T, channels)``: window length in samples and number of channels (ROIs).
    dim : int
        Token size.
    mixer : {"lstm", "transformer"}
        Sequence model run over the tokens.
    tokenize : {"time", "roi"}
        ``time``: one token per time point (channels -> dim, plus a sinusoidal
        time position); ``roi``: one token per channel carrying its whole window
        (T -> dim, plus a learned channel embedding).
    n_layers, n_heads, dropout
        Sequence-model sizes.
    labels : list of str, optional
        Channel names (``tokenize="roi"``), reported in the provenance.
    """

    fixed_options = ("mixer",)  # the registered subclasses choose it

    def __init__(
        self,
        input_shape,
        dim: int,
        mixer: str = "transformer",
        tokenize: str = "time",
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.0,
        labels: list[str] | None = None,
    ):
        super().__init__()
        if tokenize not in TOKENIZATIONS:
            raise ValueError(f"tokenize must be one of {TOKENIZATIONS}, got {tokenize!r}")
        self.input_shape = sample_shape(input_shape, 2, "time_series")
        n_time, n_channels = self.input_shape
        if labels is not None and len(labels) != n_channels:
            raise ValueError(f"{len(labels)} channel labels for {n_channels} channels")
        self.labels = None if labels is None else tuple(str(x) for x in labels)
        self.tokenize = tokenize
        self.dim = dim
        if tokenize == "time":
            self.embed = nn.Linear(n_channels, dim)
        else:
            self.embed = nn.Linear(n_time, dim)
            self.channel_embedding = nn.Parameter(torch.randn(n_channels, dim) * 0.02)
        self.mixer = SequenceMixer(mixer, dim, n_heads, n_layers, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Series (B, T, channels) -> tokens (B, T, dim) or (B, channels, dim)."""
        if self.tokenize == "time":
            steps = torch.arange(x.shape[1], device=x.device)
            tokens = self.embed(x) + sinusoidal_embedding(steps, self.dim).to(x.dtype)
        else:
            tokens = self.embed(x.transpose(1, 2)) + self.channel_embedding
        return self.mixer(tokens)

    def token_provenance(self, input_shape=None) -> TokenProvenance:
        """``time`` (token i = sample i) or ``roi`` (token i = channel i) provenance."""
        shape = sample_shape(
            self.input_shape if input_shape is None else input_shape, 2, "time_series"
        )
        if self.tokenize == "time":
            return TokenProvenance("time", shape[0], input_shape=shape)
        return TokenProvenance("roi", shape[1], labels=self.labels, input_shape=shape)


@register_encoder("time_series", "lstm")
class LSTMTimeSeriesEncoder(TimeSeriesEncoder):
    """Bidirectional-LSTM time-series encoder (see :class:`TimeSeriesEncoder`)."""

    def __init__(self, input_shape, dim: int, **options):
        super().__init__(input_shape, dim, mixer="lstm", **options)


@register_encoder("time_series", "transformer")
class TransformerTimeSeriesEncoder(TimeSeriesEncoder):
    """Transformer time-series encoder (see :class:`TimeSeriesEncoder`)."""

    def __init__(self, input_shape, dim: int, **options):
        super().__init__(input_shape, dim, mixer="transformer", **options)
