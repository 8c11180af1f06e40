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
        ``time_offset`` is added to every query as a sinusoidal embedding (with
        ``readout: window``).
    readout : {"window", "run"}
        ``query: roi`` only. ``window`` (default): one linear map dim -> T shared by
        every window start, the start entering as the query's sinusoidal code.
        ``run``: each conditioned ROI query is read out to the whole run's time course
        (one linear map dim -> ``run_length``) and the window is its slice
        ``[time_offset, time_offset + T)``; no window-start code enters the queries, so
        an ROI's attention is the same for every window, and a condition token's value
        can change the response in absolute run time (a latency, a condition
        preference of a fixed task design), which one window-shared read-out cannot
        (docs/architecture.md, "Absolute-time read-out").
    run_length : int, optional
        ``readout: run``: volumes in a run (>= T); every window must end within it.
        The workflow derives it from the shards (``build_model``).
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
        readout: str = "window",
        run_length: int | None = None,
    ):
        super().__init__()
        if query not in ("time", "roi"):
            raise ValueError(f"query must be 'time' or 'roi', got {query!r}")
        self.output_shape = sample_shape(output_shape, 2, "time_series")
        n_time, n_channels = self.output_shape
        self.run_length = check_readout(readout, run_length, query, n_time)
        self.readout_kind = readout
        # the model passes time_offset to forward (modalmerge.models.layers.decode)
        self.reads_time_offset = readout == "run"
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
        n_out = n_channels if query == "time" else (n_time if readout == "window" else run_length)
        self.readout = nn.Linear(dim, n_out)

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
        if self.readout_kind == "run":  # the start enters only where the window is cut
            return self.query.expand(batch_size, -1, -1)
        return self.query + sinusoidal_embedding(offset, self.dim).to(self.query.dtype)[:, None]

    def forward(self, conditioned: torch.Tensor, target=None, time_offset=None) -> torch.Tensor:
        """Conditioned queries (B, n_queries, dim) -> series (B, T, channels).

        ``time_offset`` (B,) long: the window starts, read by ``readout: run`` only
        (default 0)."""
        out = self.readout(self.mixer(conditioned))
        if self.query_kind == "time":
            return out
        if self.readout_kind == "run":
            out = run_window(out, time_offset, self.output_shape[0])
        return out.transpose(1, 2)

    def query_provenance(self) -> TokenProvenance:
        """``time`` or ``roi`` provenance of the target queries."""
        if self.query_kind == "time":
            return TokenProvenance("time", self.n_queries, input_shape=self.output_shape)
        return TokenProvenance(
            "roi", self.n_queries, labels=self.labels, input_shape=self.output_shape
        )


def check_readout(readout: str, run_length, query: str, n_time: int) -> int | None:
    """The run length of ``readout: run`` (None for ``window``); ValueError naming the
    problem for an unknown read-out, a run read-out of time queries or a bad length."""
    if readout not in ("window", "run"):
        raise ValueError(f"readout must be 'window' or 'run', got {readout!r}")
    if readout == "window":
        if run_length is not None:
            raise ValueError("run_length is an option of readout: run only")
        return None
    if query != "roi":
        raise ValueError("readout: run needs query: roi (one query per ROI)")
    if isinstance(run_length, bool) or not isinstance(run_length, int) or run_length < n_time:
        raise ValueError(
            f"readout: run needs run_length, the volumes of a run, an integer >= the "
            f"window's {n_time} volumes; got {run_length!r}"
        )
    return run_length


def run_window(run: torch.Tensor, time_offset, n_time: int) -> torch.Tensor:
    """Slice ``[start, start + n_time)`` of each sample's run read-out (B, Q, run_length)."""
    b, _, run_length = run.shape
    start = (
        torch.zeros(b, dtype=torch.long, device=run.device)
        if time_offset is None
        else time_offset.to(run.device).long()
    )
    if bool((start < 0).any()) or bool((start + n_time > run_length).any()):
        raise ValueError(
            f"readout: run: window starts {sorted(set(start.tolist()))} with {n_time} "
            f"volumes leave the run of run_length {run_length} volumes; set run_length "
            f"to at least the last start + {n_time}"
        )
    index = start[:, None] + torch.arange(n_time, device=run.device)  # (B, T)
    return run.gather(2, index[:, None, :].expand(-1, run.shape[1], -1))


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
