"""Small shared building blocks: token provenance, position embeddings, sequence mixers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

TOKEN_KINDS = ("image_grid", "time", "roi", "word", "column", "region", "point", "space_time")


@dataclass(frozen=True)
class TokenProvenance:
    """Where each token of a sequence came from, so attention can be drawn on the input.

    Attributes
    ----------
    kind : str
        ``"image_grid"`` (one token per feature-map cell), ``"time"`` (one per time
        point), ``"roi"`` (one per channel / region), ``"word"`` (one per text
        position), ``"column"`` (one per table column) or ``"region"`` (one per atlas
        region of an image, label order: the ``region_cnn`` encoder).
    n_tokens : int
        Number of tokens.
    grid_shape : tuple of int or None
        For ``image_grid``: the feature-map grid ``(d, h, w)`` or ``(h, w)``; token
        ``i`` is cell ``numpy.unravel_index(i, grid_shape)``. Reshape attention to
        ``grid_shape`` and interpolate to ``input_shape`` to overlay it on the image.
    labels : tuple of str or None
        Optional names of the tokens (ROI names, column names).
    input_shape : tuple of int or None
        The per-sample input shape the tokens were computed from (no batch axis).
    cell_size : tuple of int or None
        ``space_time`` only: the input extent of one grid cell per axis ``(volumes,
        voxels, voxels, voxels)`` (the patch; the input is zero-padded to whole cells).
    """

    kind: str
    n_tokens: int
    grid_shape: tuple[int, ...] | None = None
    labels: tuple[str, ...] | None = None
    input_shape: tuple[int, ...] | None = None
    cell_size: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in TOKEN_KINDS:
            raise ValueError(f"token kind must be one of {TOKEN_KINDS}, got {self.kind!r}")
        if self.grid_shape is not None and math.prod(self.grid_shape) != self.n_tokens:
            raise ValueError(f"grid_shape {self.grid_shape} does not hold {self.n_tokens} tokens")
        if self.labels is not None and len(self.labels) != self.n_tokens:
            raise ValueError(f"{len(self.labels)} labels for {self.n_tokens} tokens")


def space_time_coordinates(prov: TokenProvenance) -> torch.Tensor:
    """``(n_tokens, 4)`` float: each ``space_time`` token's ``(t, x, y, z)`` provenance.

    ``t`` is the token's first volume in the window; ``x, y, z`` the centre of its
    patch in voxels of the input grid (axes D, H, W), so attention maps back onto the
    brain over time.
    """
    if prov.kind != "space_time" or prov.grid_shape is None or prov.cell_size is None:
        raise ValueError(f"space_time provenance with a cell_size needed, got {prov.kind!r}")
    cells = (
        torch.stack(
            torch.meshgrid(*[torch.arange(n) for n in prov.grid_shape], indexing="ij"), dim=-1
        )
        .reshape(-1, 4)
        .to(torch.float32)
    )
    size = torch.tensor(prov.cell_size, dtype=torch.float32)
    out = cells * size
    out[:, 1:] += (size[1:] - 1) / 2  # patch centres, in voxels
    return out


def sinusoidal_embedding(positions: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Fixed sine/cosine embedding of (possibly fractional) positions.

    Parameters
    ----------
    positions : Tensor
        Any shape ``S``; positions in samples (time points, word index).
    dim : int
        Embedding size.
    base : float
        Longest wavelength, in position units.

    Returns
    -------
    Tensor
        ``(*S, dim)`` float32.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(base) * torch.arange(half, device=positions.device, dtype=torch.float32) / half
    )
    angles = positions.to(torch.float32).unsqueeze(-1) * freqs  # (*S, half)
    emb = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class GridPositionEmbedding(nn.Module):
    """Learned Fourier-feature embedding of a token's position on a 2D/3D grid.

    Cell centres are placed in ``[0, 1]`` per axis, expanded into sines and
    cosines at ``n_frequencies`` octaves, and projected linearly to ``dim``; so
    the same module serves any grid size.
    """

    def __init__(self, spatial_dims: int, dim: int, n_frequencies: int = 8):
        super().__init__()
        self.n_frequencies = n_frequencies
        self.register_buffer(
            "freqs", math.pi * 2.0 ** torch.arange(n_frequencies, dtype=torch.float32), False
        )
        self.proj = nn.Linear(spatial_dims * 2 * n_frequencies, dim)

    def forward(self, grid_shape: tuple[int, ...]) -> torch.Tensor:
        """Return ``(prod(grid_shape), dim)`` position embeddings, row-major over the grid."""
        axes = [(torch.arange(n, device=self.freqs.device) + 0.5) / n for n in grid_shape]
        coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(
            -1, len(grid_shape)
        )  # (n_tokens, spatial_dims)
        angles = (coords.unsqueeze(-1) * self.freqs).flatten(1)
        return self.proj(torch.cat([angles.sin(), angles.cos()], dim=-1))


class FeedForward(nn.Module):
    """Position-wise two-layer MLP ``dim -> mult*dim -> dim`` with GELU and dropout."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, mult * dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mult * dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over tokens ``(B, N, dim) -> (B, dim)``, counting only ``mask`` True tokens."""
    if mask is None:
        return tokens.mean(dim=1)
    weights = mask.to(tokens.dtype).unsqueeze(-1)  # (B, N, 1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class SequenceMixer(nn.Module):
    """Mix a token sequence ``(B, N, dim) -> (B, N, dim)`` with an LSTM/GRU or a transformer.

    Parameters
    ----------
    kind : {"lstm", "gru", "transformer"}
        Recurrent mixers run bidirectionally (``dim // 2`` hidden units each way)
        unless ``causal``; the transformer is pre-norm self-attention.
    dim, n_heads, n_layers, dropout
        Sizes; ``n_heads`` is used by the transformer only.
    causal : bool
        Each token sees only itself and earlier tokens (autoregressive decoding).
    """

    def __init__(
        self,
        kind: str,
        dim: int,
        n_heads: int = 4,
        n_layers: int = 2,
        dropout: float = 0.0,
        causal: bool = False,
    ):
        super().__init__()
        self.kind = kind
        self.causal = causal
        if kind in ("lstm", "gru"):
            bidirectional = not causal
            if bidirectional and dim % 2:
                raise ValueError(f"a bidirectional {kind} needs an even dim, got {dim}")
            rnn = nn.LSTM if kind == "lstm" else nn.GRU
            self.rnn = rnn(
                dim,
                dim // 2 if bidirectional else dim,
                num_layers=n_layers,
                batch_first=True,
                bidirectional=bidirectional,
                dropout=dropout if n_layers > 1 else 0.0,
            )
            self.norm = nn.LayerNorm(dim)
        elif kind == "transformer":
            layer = nn.TransformerEncoderLayer(
                dim, n_heads, 4 * dim, dropout, activation="gelu", batch_first=True, norm_first=True
            )
            self.transformer = nn.TransformerEncoder(
                layer, n_layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False
            )
        else:
            raise ValueError(f"sequence mixer must be 'lstm', 'gru' or 'transformer', got {kind!r}")

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, N, dim); ``padding_mask`` (B, N) True for real tokens.

        The transformer masks the padded keys. Recurrent mixers expect the padding
        at the end (``[bos, words, eos, pad, ...]``) and run on packed sequences of
        each row's real length, so a backward pass starts at the last real token,
        not at the padding; padded positions come out as ``norm(x)``.
        """
        if self.kind == "transformer":
            n = x.shape[1]
            causal_mask = (
                nn.Transformer.generate_square_subsequent_mask(n, device=x.device, dtype=x.dtype)
                if self.causal
                else None
            )
            pad = None if padding_mask is None else ~padding_mask
            if pad is not None and causal_mask is not None:  # both masks must share a type
                pad = torch.zeros_like(pad, dtype=x.dtype).masked_fill(pad, float("-inf"))
            return self.transformer(
                x, mask=causal_mask, src_key_padding_mask=pad, is_causal=self.causal
            )
        if padding_mask is None:
            out, _ = self.rnn(x)
        else:
            lengths = padding_mask.sum(dim=1).clamp_min(1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(
                x, lengths, batch_first=True, enforce_sorted=False
            )
            out, _ = self.rnn(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(
                out, batch_first=True, total_length=x.shape[1]
            )
        return self.norm(x + out)


def sample_shape(input_shape, sample_ndim: int, what: str) -> tuple[int, ...]:
    """Drop a leading batch axis from ``input_shape`` if present; return the per-sample shape."""
    shape = tuple(int(n) for n in input_shape)
    if len(shape) == sample_ndim + 1:
        shape = shape[1:]
    if len(shape) != sample_ndim:
        raise ValueError(
            f"{what} input shape must have {sample_ndim} axes (or {sample_ndim + 1} with batch), "
            f"got {shape}"
        )
    return shape


class Encoder(nn.Module):
    """Base of encoders: ``forward(x) -> (B, n_tokens, dim)``, plus provenance and padding."""

    def token_provenance(self, input_shape) -> TokenProvenance:  # pragma: no cover - abstract
        raise NotImplementedError

    def padding_mask(self, x: torch.Tensor) -> torch.Tensor | None:
        """``(B, n_tokens)`` bool, True for real tokens; None when every token is real."""
        return None


def encode_tokens(encoder: nn.Module, condition: torch.Tensor):
    """``encoder``'s tokens of ``condition`` and its padding mask (None without one:
    ``padding_mask`` is optional for plugin encoders that do not subclass :class:`Encoder`)."""
    padding_mask = getattr(encoder, "padding_mask", None)
    return encoder(condition), None if padding_mask is None else padding_mask(condition)


class Decoder(nn.Module):
    """Base of decoders: learned queries ``(B, n_queries, dim)`` -> the target modality.

    ``queries(batch_size, target, time_offset)`` returns the query tokens before
    conditioning; ``forward(conditioned)`` maps the conditioned queries to the
    prediction; ``query_provenance()`` says what each query stands for.
    """

    n_queries: int

    def queries(
        self,
        batch_size: int,
        target: torch.Tensor | None = None,
        time_offset: torch.Tensor | None = None,
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def query_provenance(self) -> TokenProvenance:  # pragma: no cover - abstract
        raise NotImplementedError


def decode(decoder: nn.Module, conditioned: torch.Tensor, time_offset=None, **kwargs):
    """``decoder(conditioned, **kwargs)``, with ``time_offset`` for a decoder whose
    ``reads_time_offset`` is true (a time-series read-out of the whole run). Read with
    ``getattr``: a plugin decoder need only be an ``nn.Module``."""
    if getattr(decoder, "reads_time_offset", False):
        return decoder(conditioned, time_offset=time_offset, **kwargs)
    return decoder(conditioned, **kwargs)
