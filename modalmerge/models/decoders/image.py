"""Image decoder (2D/3D): a coarse grid of block queries, upsampled by transposed convolutions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from modalmerge.models.layers import Decoder, GridPositionEmbedding, TokenProvenance, sample_shape
from modalmerge.models.registry import register_decoder


@register_decoder("image", "deconv")
@register_decoder("image", "cnn")
class DeconvImageDecoder(Decoder):
    """One query per block of a coarse grid; transposed convolutions bring it to full size.

    The coarse grid is the target halved ``n_upsample`` times (rounded up); the
    decoder doubles it ``n_upsample`` times and interpolates to the exact target
    shape, so odd shapes (e.g. 36 x 44 x 36) work.

    Parameters
    ----------
    output_shape : tuple of int
        ``(C, D, H, W)`` or ``(C, H, W)``.
    dim : int
        Query size.
    n_upsample : int, optional
        Doublings; by default the fewest that keep ``n_queries <= max_queries``.
    min_channels : int
        Channels are halved at each doubling, not below this.
    """

    def __init__(
        self,
        output_shape,
        dim: int,
        n_upsample: int | None = None,
        max_queries: int = 256,
        min_channels: int = 16,
    ):
        super().__init__()
        spatial_dims = len(output_shape) - 1
        if spatial_dims not in (2, 3):
            raise ValueError(
                f"image target shape must be (C, H, W) or (C, D, H, W), got {output_shape}"
            )
        self.output_shape = sample_shape(output_shape, spatial_dims + 1, "image")
        spatial = self.output_shape[1:]
        if n_upsample is None:
            n_upsample = 0
            while math.prod(self._coarse(spatial, n_upsample)) > max_queries:
                n_upsample += 1
        self.n_upsample = n_upsample
        self.grid_shape = self._coarse(spatial, n_upsample)
        self.n_queries = math.prod(self.grid_shape)
        self.spatial_dims = spatial_dims
        self.query = nn.Parameter(torch.randn(self.n_queries, dim) * 0.02)
        self.position = GridPositionEmbedding(spatial_dims, dim)

        deconv = nn.ConvTranspose3d if spatial_dims == 3 else nn.ConvTranspose2d
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        layers, c_in = [], dim
        for _ in range(n_upsample):
            c_out = max(min_channels, c_in // 2)
            layers += [
                deconv(c_in, c_out, 2, stride=2),
                nn.GroupNorm(min(8, c_out), c_out),
                nn.GELU(),
            ]
            c_in = c_out
        layers.append(conv(c_in, self.output_shape[0], 3, padding=1))
        self.net = nn.Sequential(*layers)

    @staticmethod
    def _coarse(spatial, n_upsample: int) -> tuple[int, ...]:
        return tuple(max(1, math.ceil(n / 2**n_upsample)) for n in spatial)

    def queries(self, batch_size: int, target=None, time_offset=None) -> torch.Tensor:
        """Block queries (B, n_queries, dim), row-major over ``grid_shape``."""
        q = self.query + self.position(self.grid_shape)
        return q.unsqueeze(0).expand(batch_size, -1, -1)

    def forward(self, conditioned: torch.Tensor, target=None) -> torch.Tensor:
        """Conditioned queries (B, n_queries, dim) -> image (B, C, *spatial)."""
        b, _, d = conditioned.shape
        x = conditioned.transpose(1, 2).reshape(b, d, *self.grid_shape)
        x = self.net(x)
        mode = "trilinear" if self.spatial_dims == 3 else "bilinear"
        if tuple(x.shape[2:]) != self.output_shape[1:]:
            x = F.interpolate(x, size=self.output_shape[1:], mode=mode, align_corners=False)
        return x

    def query_provenance(self) -> TokenProvenance:
        """``image_grid`` provenance of the block queries over the target image."""
        return TokenProvenance(
            "image_grid", self.n_queries, grid_shape=self.grid_shape, input_shape=self.output_shape
        )
