"""4D volume-series encoder: 3D patches per volume, attention divided over space and time.

A window of BOLD volumes ``(B, T, D, H, W)`` becomes one token per 3D patch of each
(group of ``time_patch``) volume(s). Attention is factorised as in TimeSformer's
"divided space-time attention" (Bertasius et al., 2021): in each block every token
first attends to the tokens at the same patch over time, then to the tokens of the
same volume over space, then a feed-forward layer. Positions: a learned Fourier
embedding of the patch's place on the grid (space) plus a fixed sinusoidal code of
the volume index (time). ``attention="joint"`` attends over all ``t x s`` tokens at
once instead (the benchmark's twin: same weights, quadratic cost in ``t x s``).

Why divided attention rather than SwiFT's 4D shifted windows: on the grids the shards
store (a 4 mm atlas downsampled 2x: 18 x 22 x 18 voxels, 4 x 5 x 4 = 80 patches of
4^3) one volume's patches are fewer than one SwiFT window, so windows would not
save anything, while divided attention cuts the cost from ``(t s)^2`` to
``t s (t + s)`` with two standard attention calls and no window/shift bookkeeping;
the tokens' provenance stays a plain ``(t, d, h, w)`` grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from modalmerge.models.layers import (
    Encoder,
    FeedForward,
    GridPositionEmbedding,
    TokenProvenance,
    sample_shape,
    sinusoidal_embedding,
)
from modalmerge.models.registry import register_encoder


class _SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention over the middle axis of ``(batch, n, dim)``."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.n_heads, self.dropout = n_heads, dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (
            self.qkv(self.norm(x)).reshape(b, n, 3, self.n_heads, d // self.n_heads)
            .permute(2, 0, 3, 1, 4)
        )  # fmt: skip  # each (b, heads, n, d_head)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return x + self.out(y.transpose(1, 2).reshape(b, n, d))


class SpaceTimeBlock(nn.Module):
    """One block over tokens ``(B, t, s, dim)``: time attention, space attention, MLP.

    ``joint=True``: one attention over all ``t * s`` tokens instead of the two.
    """

    def __init__(self, dim: int, n_heads: int, dropout: float, joint: bool = False):
        super().__init__()
        self.joint = joint
        self.time = None if joint else _SelfAttention(dim, n_heads, dropout)
        self.space = _SelfAttention(dim, n_heads, dropout)
        self.norm = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, 4, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, s, d = x.shape
        if self.joint:
            x = self.space(x.reshape(b, t * s, d)).reshape(b, t, s, d)
        else:
            # time: each patch attends to itself in the other volumes
            x = self.time(x.transpose(1, 2).reshape(b * s, t, d))
            x = x.reshape(b, s, t, d).transpose(1, 2)
            # space: each volume's patches attend to each other
            x = self.space(x.reshape(b * t, s, d)).reshape(b, t, s, d)
        return x + self.mlp(self.norm(x))


@register_encoder("volume_series", "spatiotemporal")
class SpatioTemporalEncoder(Encoder):
    """4D window ``(B, T, D, H, W)`` -> tokens ``(B, t * d * h * w, dim)``, time-major.

    Parameters
    ----------
    input_shape : tuple of int
        ``(T, D, H, W)``.
    dim : int
        Token size.
    patch : int
        Edge of the cubic 3D patch in voxels (the volume is zero-padded to a multiple).
    time_patch : int
        Volumes per token (a tubelet); T is zero-padded to a multiple.
    n_layers : int
        Space-time blocks.
    attention : {"divided", "joint"}
        ``divided``: time then space attention per block (TimeSformer); ``joint``: one
        attention over all tokens (for comparison: cost quadratic in their number).
    n_heads, dropout
        Attention sizes (the model's ``num_attention_heads`` and ``dropout``).
    """

    def __init__(
        self,
        input_shape,
        dim: int,
        patch: int = 4,
        time_patch: int = 1,
        n_layers: int = 2,
        attention: str = "divided",
        n_heads: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        if attention not in ("divided", "joint"):
            raise ValueError(f"attention must be 'divided' or 'joint', got {attention!r}")
        if patch < 1 or time_patch < 1 or n_layers < 0:
            raise ValueError("patch and time_patch must be >= 1 and n_layers >= 0")
        self.input_shape = sample_shape(input_shape, 4, "volume_series")
        self.patch, self.time_patch, self.dim = int(patch), int(time_patch), dim
        kernel = (self.time_patch, self.patch, self.patch, self.patch)
        # a (time_patch, p, p, p) patch of the window -> one token: a linear map of its voxels
        self.embed = nn.Linear(math.prod(kernel), dim)
        self.space_position = GridPositionEmbedding(3, dim)
        self.blocks = nn.ModuleList(
            [SpaceTimeBlock(dim, n_heads, dropout, attention == "joint") for _ in range(n_layers)]
        )
        self.norm = nn.LayerNorm(dim)

    def grid_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """The token grid ``(t, d, h, w)`` of a ``(T, D, H, W)`` window."""
        t, *spatial = shape
        return (
            math.ceil(t / self.time_patch),
            *(math.ceil(n / self.patch) for n in spatial),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Window (B, T, D, H, W) -> tokens (B, t * d * h * w, dim), token i at grid cell i."""
        b = x.shape[0]
        grid = self.grid_shape(tuple(x.shape[1:]))
        sizes = (self.time_patch, self.patch, self.patch, self.patch)
        pad = []
        for n, g, k in zip(reversed(x.shape[1:]), reversed(grid), reversed(sizes), strict=True):
            pad += [0, g * k - n]
        x = F.pad(x, pad)
        # (B, t, kt, d, p, h, p, w, p) -> (B, t, d, h, w, kt * p^3)
        x = x.reshape(b, grid[0], sizes[0], grid[1], sizes[1], grid[2], sizes[2], grid[3],
                      sizes[3])  # fmt: skip
        x = x.permute(0, 1, 3, 5, 7, 2, 4, 6, 8).reshape(b, grid[0], math.prod(grid[1:]), -1)
        tokens = self.embed(x)  # (B, t, s, dim)
        space = self.space_position(grid[1:]).to(tokens.dtype)  # (s, dim)
        times = torch.arange(grid[0], device=tokens.device) * self.time_patch
        time = sinusoidal_embedding(times, self.dim).to(tokens.dtype)  # (t, dim)
        tokens = tokens + space[None, None] + time[None, :, None]
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens.reshape(b, -1, self.dim))

    def token_provenance(self, input_shape=None) -> TokenProvenance:
        """``space_time`` provenance: grid ``(t, d, h, w)`` over the window ``(T, D, H, W)``."""
        shape = self.input_shape if input_shape is None else input_shape
        shape = sample_shape(shape, 4, "volume_series")
        grid = self.grid_shape(shape)
        cell = (self.time_patch, self.patch, self.patch, self.patch)
        return TokenProvenance(
            "space_time", math.prod(grid), grid_shape=grid, input_shape=shape, cell_size=cell
        )
