"""Point-cloud decoders: values at given points, or a whole point set (Chamfer loss).

A target cloud is ``(B, N, 3 + F)``: xyz in mm, then F features. Both decoders return
that shape, so one loss (:class:`modalmerge.training.losses.PointCloudLoss`) scores both:
point by point when the prediction sits on the target's coordinates, by Chamfer
distance otherwise.
"""

from __future__ import annotations

import torch
from torch import nn

from modalmerge.models.encoders.point_cloud import FourierCoordinates
from modalmerge.models.layers import Decoder, SequenceMixer, TokenProvenance, sample_shape
from modalmerge.models.registry import register_decoder


def _cloud_shape(output_shape) -> tuple[int, int]:
    shape = sample_shape(output_shape, 2, "point_cloud")
    if shape[1] < 3 or shape[0] < 1:
        raise ValueError(f"a point cloud target is (N, 3 + F) with N >= 1, got {shape}")
    return shape


@register_decoder("point_cloud", "values")
class PointValueDecoder(Decoder):
    """One query per target point, built from its coordinates; predicts its F features.

    The coordinates are given (``target[..., :3]``, e.g. a subject's surface vertices) and
    copied into the prediction; only the features are predicted. ``target`` must be passed
    to the model (``model(condition, target=cloud)``): its features are never read.

    Parameters
    ----------
    output_shape : tuple of int
        ``(N, 3 + F)``, F >= 1.
    dim : int
        Query size.
    coordinate_scale : float
        Coordinates are divided by it (mm) before the Fourier embedding.
    n_layers : int
        Transformer layers over the conditioned point queries (0: each point alone).
    """

    def __init__(
        self,
        output_shape,
        dim: int,
        coordinate_scale: float = 70.0,
        n_layers: int = 0,
        n_heads: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.output_shape = _cloud_shape(output_shape)
        if self.output_shape[1] == 3:
            raise ValueError("the values decoder predicts features: the target needs F >= 1")
        self.n_queries = self.output_shape[0]
        self.coordinate_scale = float(coordinate_scale)
        self.query = nn.Parameter(torch.randn(dim) * 0.02)
        self.position = FourierCoordinates(dim)
        self.mixer = (
            SequenceMixer("transformer", dim, n_heads, n_layers, dropout) if n_layers else None
        )
        self.readout = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, self.output_shape[1] - 3))

    def queries(self, batch_size: int, target=None, time_offset=None) -> torch.Tensor:
        """Queries (B, N, dim) at the target's coordinates ``target[..., :3]``."""
        if target is None:
            raise ValueError(
                "the point-cloud values decoder needs the target's coordinates: "
                "call model(condition, target=cloud) with cloud (B, N, 3 + F)"
            )
        return self.query + self.position(
            target[..., :3].to(self.query.dtype) / self.coordinate_scale
        )

    def forward(self, conditioned: torch.Tensor, target=None) -> torch.Tensor:
        """Conditioned queries (B, N, dim) -> cloud (B, N, 3 + F): given xyz, predicted features."""
        if target is None:
            raise ValueError("the point-cloud values decoder needs target= (its coordinates)")
        mixed = conditioned if self.mixer is None else self.mixer(conditioned)
        # the given coordinates keep their dtype (under autocast too), so the loss sees
        # exactly the target's points and scores point by point
        values = self.readout(mixed).to(target.dtype)
        return torch.cat([target[..., :3], values], dim=-1)

    def query_provenance(self) -> TokenProvenance:
        """``point`` provenance: query i is target point i."""
        return TokenProvenance("point", self.n_queries, input_shape=self.output_shape)


@register_decoder("point_cloud", "set")
class PointSetDecoder(Decoder):
    """Generates a point set: N learned queries, mixed, each read out as xyz + features.

    Trained with a Chamfer loss (the set has no order). Coordinates come out in the
    target's units: the readout is multiplied by ``coordinate_scale``.

    Parameters
    ----------
    output_shape : tuple of int
        ``(N, 3 + F)``.
    dim : int
        Query size.
    coordinate_scale : float
        Output coordinates are ``coordinate_scale`` x the readout (mm).
    n_layers : int
        Transformer layers over the conditioned queries.
    """

    def __init__(
        self,
        output_shape,
        dim: int,
        coordinate_scale: float = 70.0,
        n_layers: int = 1,
        n_heads: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.output_shape = _cloud_shape(output_shape)
        self.n_queries = self.output_shape[0]
        self.coordinate_scale = float(coordinate_scale)
        # queries start spread over the unit ball's directions (distinct, like ROI queries)
        self.query = nn.Parameter(torch.randn(self.n_queries, dim))
        self.mixer = (
            SequenceMixer("transformer", dim, n_heads, n_layers, dropout) if n_layers else None
        )
        self.readout = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, self.output_shape[1]))

    def queries(self, batch_size: int, target=None, time_offset=None) -> torch.Tensor:
        """Learned queries (B, N, dim)."""
        return self.query.unsqueeze(0).expand(batch_size, -1, -1)

    def forward(self, conditioned: torch.Tensor, target=None) -> torch.Tensor:
        """Conditioned queries (B, N, dim) -> generated cloud (B, N, 3 + F)."""
        mixed = conditioned if self.mixer is None else self.mixer(conditioned)
        out = self.readout(mixed)
        return torch.cat([out[..., :3] * self.coordinate_scale, out[..., 3:]], dim=-1)

    def query_provenance(self) -> TokenProvenance:
        """``point`` provenance: query i is generated point i."""
        return TokenProvenance("point", self.n_queries, input_shape=self.output_shape)
