"""Point-cloud encoder: farthest-point centroids, each summarising its k nearest neighbours
at several scales with point-transformer local attention.

A cloud is ``(B, N, 3 + F)``: xyz in mm, then ``F`` per-point features (intensity,
thickness, curvature, ...). Plain CPU torch (``torch.cdist`` + ``topk``), no compiled
extensions; why not torch_geometric is written in docs/architecture.md §3.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from modalmerge.models.layers import Encoder, FeedForward, TokenProvenance, sample_shape
from modalmerge.models.registry import register_encoder


def farthest_point_sample(xyz: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Indices ``(B, n_samples)`` of farthest-point samples of ``xyz`` ``(B, N, 3)``.

    The first sample is the point farthest from the cloud's mean, so the result does not
    depend on the order of the points (up to exact ties); each next one is the point
    farthest from those chosen so far. One ``(B, N)`` distance update per sample.
    """
    b, n, _ = xyz.shape
    if n_samples > n:
        raise ValueError(f"cannot sample {n_samples} centroids from {n} points")
    xyz = xyz.detach()
    rows = torch.arange(b, device=xyz.device)
    chosen = torch.empty(b, n_samples, dtype=torch.long, device=xyz.device)
    nearest = torch.full((b, n), float("inf"), device=xyz.device, dtype=xyz.dtype)
    current = (xyz - xyz.mean(1, keepdim=True)).square().sum(-1).argmax(1)  # (B,)
    for i in range(n_samples):
        chosen[:, i] = current
        d = (xyz - xyz[rows, current][:, None]).square().sum(-1)  # (B, N)
        nearest = torch.minimum(nearest, d)
        current = nearest.argmax(1)
    return chosen


def gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values`` (B, N, C) at ``index`` (B, *S) -> (B, *S, C)."""
    b = values.shape[0]
    flat = index.reshape(b, -1)
    out = torch.gather(values, 1, flat[..., None].expand(-1, -1, values.shape[-1]))
    return out.reshape(*index.shape, values.shape[-1])


class FourierCoordinates(nn.Module):
    """Sines and cosines of coordinates (in units of ``scale``) at octave frequencies, then linear."""

    def __init__(self, dim: int, n_frequencies: int = 6, in_dims: int = 3):
        super().__init__()
        freqs = math.pi * 2.0 ** torch.arange(n_frequencies, dtype=torch.float32)
        self.register_buffer("freqs", freqs, persistent=False)
        self.proj = nn.Linear(in_dims * 2 * n_frequencies, dim)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """``coords`` (..., 3), roughly in [-1, 1] -> (..., dim)."""
        angles = (coords.unsqueeze(-1) * self.freqs).flatten(-2)
        return self.proj(torch.cat([angles.sin(), angles.cos()], dim=-1))


class LocalPointAttention(nn.Module):
    """Point-transformer vector attention of a centroid over its neighbours (Zhao et al. 2021).

    For centroid ``c`` and neighbour ``j``: ``delta = mlp(p_c - p_j)`` (relative position),
    weights ``softmax_j(mlp(q_c - k_j + delta))`` per channel, output
    ``sum_j w_j * (v_j + delta)``.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim) for _ in range(3))
        self.position = nn.Sequential(nn.Linear(3, dim), nn.GELU(), nn.Linear(dim, dim))
        self.weight = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.out = nn.Linear(dim, dim)

    def forward(
        self,
        centre_features: torch.Tensor,
        centre_xyz: torch.Tensor,
        neighbour_features: torch.Tensor,
        neighbour_xyz: torch.Tensor,
    ) -> torch.Tensor:
        """(B, M, dim), (B, M, 3), (B, M, k, dim), (B, M, k, 3) -> (B, M, dim)."""
        delta = self.position(centre_xyz[:, :, None] - neighbour_xyz)  # (B, M, k, dim)
        q = self.to_q(centre_features)[:, :, None]
        logits = self.weight(q - self.to_k(neighbour_features) + delta)
        weights = logits.softmax(dim=2)
        return self.out((weights * (self.to_v(neighbour_features) + delta)).sum(2))


@register_encoder("point_cloud", "point_transformer")
class PointTransformerEncoder(Encoder):
    """Centroid tokens: farthest-point samples, each with local attention at several scales.

    Parameters
    ----------
    input_shape : tuple of int
        ``(N, 3 + F)``: N points, xyz in mm then F features.
    dim : int
        Token size.
    n_tokens : int
        Centroids (tokens), sampled by farthest-point sampling; at most N.
    neighbours : list of int
        k of each scale's k-nearest-neighbour group (multi-scale grouping, PointNet++
        MSG style); each at most N.
    coordinate_scale : float
        Coordinates are divided by it (mm) before any layer sees them (a brain: ~70).
    n_layers : int
        Transformer layers over the centroid tokens after the local attention (global
        context); 0 for none.
    """

    def __init__(
        self,
        input_shape,
        dim: int,
        n_tokens: int = 64,
        neighbours: list[int] | tuple[int, ...] = (8, 16),
        coordinate_scale: float = 70.0,
        n_layers: int = 1,
        n_heads: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.input_shape = sample_shape(input_shape, 2, "point_cloud")
        n_points, width = self.input_shape
        if width < 3:
            raise ValueError(f"a point cloud has xyz then features: (N, 3 + F), got {input_shape}")
        neighbours = tuple(int(k) for k in neighbours)
        if not neighbours or min(neighbours) < 1:
            raise ValueError(f"neighbours must be positive neighbour counts, got {neighbours}")
        if n_tokens < 1 or n_tokens > n_points or max(neighbours) > n_points:
            raise ValueError(
                f"point cloud of {n_points} points is too small for {n_tokens} centroids "
                f"and {max(neighbours)} neighbours (needs at least {max(n_tokens, *neighbours)})"
            )
        if coordinate_scale <= 0:
            raise ValueError(f"coordinate_scale must be > 0, got {coordinate_scale}")
        self.n_tokens, self.neighbours = int(n_tokens), neighbours
        self.coordinate_scale = float(coordinate_scale)
        self.embed = nn.Sequential(nn.Linear(width, dim), nn.GELU(), nn.Linear(dim, dim))
        self.scales = nn.ModuleList(LocalPointAttention(dim) for _ in neighbours)
        self.merge = nn.Linear(dim * len(neighbours), dim)
        self.norm = nn.LayerNorm(dim)
        self.feed_forward = FeedForward(dim, dropout=dropout)
        self.position = FourierCoordinates(dim)
        self.mixer = (
            nn.TransformerEncoder(
                nn.TransformerEncoderLayer(
                    dim, n_heads, 4 * dim, dropout, "gelu", batch_first=True, norm_first=True
                ),
                n_layers,
                norm=nn.LayerNorm(dim),
                enable_nested_tensor=False,
            )
            if n_layers
            else nn.Identity()
        )

    def centroid_index(self, x: torch.Tensor) -> torch.Tensor:
        """Indices ``(B, n_tokens)`` of the points the tokens are centred on."""
        return farthest_point_sample(x[..., :3], self.n_tokens)

    def token_coordinates(self, x: torch.Tensor) -> torch.Tensor:
        """Each token's centroid ``(B, n_tokens, 3)`` in the input's units (mm): its provenance."""
        return gather(x[..., :3], self.centroid_index(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Clouds (B, N, 3 + F) -> centroid tokens (B, n_tokens, dim)."""
        xyz = x[..., :3] / self.coordinate_scale
        features = self.embed(torch.cat([xyz, x[..., 3:]], dim=-1))  # (B, N, dim)
        centre = self.centroid_index(x)  # (B, M)
        centre_xyz, centre_features = gather(xyz, centre), gather(features, centre)
        # the largest scale's neighbours, nearest first: every smaller scale is a prefix
        order = torch.cdist(centre_xyz, xyz).topk(max(self.neighbours), -1, largest=False).indices
        scales = []
        for k, attend in zip(self.neighbours, self.scales, strict=True):
            group = order[..., :k]  # (B, M, k)
            scales.append(
                attend(centre_features, centre_xyz, gather(features, group), gather(xyz, group))
            )
        tokens = self.norm(self.merge(torch.cat(scales, dim=-1)) + centre_features)
        tokens = tokens + self.feed_forward(tokens) + self.position(centre_xyz)
        return self.mixer(tokens)

    def token_provenance(self, input_shape=None) -> TokenProvenance:
        """``point`` provenance: token i is centroid i (``token_coordinates`` gives where)."""
        shape = self.input_shape if input_shape is None else sample_shape(input_shape, 2, "point")
        return TokenProvenance("point", self.n_tokens, input_shape=shape)
