"""An image encoder whose tokens are the atlas regions of the subject's image.

The image's last channel holds the atlas labels (0 background, 1..R regions;
the synthetic source writes them with ``atlas_channel: true`` as the ``dseg``
channel: ``condition_channels: [T1w, dseg]``). A small full-resolution CNN maps
the other channels to features; each region's token is the mean of those
features (and of the raw channels) over the region's voxels, projected to
``dim``, plus a learned embedding of the region's index. Cross-attention
weights are then ``(target query × atlas region)`` and draw straight onto the
atlas. Nothing about which region matters enters the model: every region gets
the same pooling and its own free embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from modalmerge.models.layers import Encoder, TokenProvenance, sample_shape
from modalmerge.models.registry import register_encoder


@register_encoder("image", "region_cnn")
class RegionCNNEncoder(Encoder):
    """Region tokens: CNN features pooled within each atlas region, plus a region embedding.

    Parameters
    ----------
    input_shape : tuple
        ``(C, D, H, W)`` or ``(C, H, W)``, the last channel the atlas labels (C >= 2).
    dim : int
        Token size.
    n_regions : int
        Number of atlas regions R (labels 1..R); one token each, in label order.
    channels : int
        Width of the CNN (two 3×3(×3) convolutions at full resolution).
    """

    def __init__(self, input_shape, dim: int, n_regions: int, channels: int = 16):
        super().__init__()
        spatial_dims = len(input_shape) - 1
        if spatial_dims not in (2, 3) or input_shape[0] < 2:
            raise ValueError(
                "region_cnn needs an image (C, D, H, W) or (C, H, W) whose last channel holds "
                f"the atlas labels (C >= 2, e.g. condition_channels: [T1w, dseg]), got {input_shape}"
            )
        if not isinstance(n_regions, int) or n_regions < 1:
            raise ValueError(f"region_cnn: n_regions must be a positive integer, got {n_regions!r}")
        self.input_shape = sample_shape(input_shape, spatial_dims + 1, "image")
        self.spatial_dims = spatial_dims
        self.n_regions = n_regions
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        c_in = input_shape[0] - 1
        self.net = nn.Sequential(
            conv(c_in, channels, 3, padding=1),
            nn.GroupNorm(min(8, channels), channels),
            nn.GELU(),
            conv(channels, channels, 3, padding=1),
            nn.GroupNorm(min(8, channels), channels),
            nn.GELU(),
        )
        self.to_tokens = nn.Sequential(nn.Linear(channels + c_in, dim), nn.LayerNorm(dim))
        self.region_embedding = nn.Embedding(n_regions, dim)

    def region_masks(self, labels: torch.Tensor) -> torch.Tensor:
        """Labels ``(B, *spatial)`` -> each region's voxel weights ``(B, R, n_voxels)``
        (1 / region size inside, 0 outside; an empty region gets zeros)."""
        flat = labels.reshape(labels.shape[0], -1).round().long()
        if flat.numel() and (flat.min() < 0 or flat.max() > self.n_regions):
            raise ValueError(
                f"region_cnn: atlas labels must lie in 0..{self.n_regions} (n_regions), got "
                f"{int(flat.min())}..{int(flat.max())}"
            )
        onehot = nn.functional.one_hot(flat, self.n_regions + 1)[..., 1:].transpose(1, 2)
        onehot = onehot.float()
        return onehot / onehot.sum(dim=2, keepdim=True).clamp_min(1.0)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C, *spatial) -> per-region mean features (B, R, channels + C - 1)."""
        image, labels = x[:, :-1], x[:, -1]
        features = torch.cat([self.net(image), image], dim=1).flatten(2)  # (B, F, N)
        masks = self.region_masks(labels).to(features.dtype)  # (B, R, N)
        return torch.bmm(masks, features.transpose(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C, *spatial) -> tokens (B, R, dim), token r = atlas label r + 1."""
        tokens = self.to_tokens(self.pooled(x))
        return tokens + self.region_embedding.weight.to(tokens.dtype)

    def token_provenance(self, input_shape=None) -> TokenProvenance:
        """One ``region`` token per atlas label 1..R, in label order."""
        shape = self.input_shape if input_shape is None else input_shape
        shape = sample_shape(shape, self.spatial_dims + 1, "image")
        return TokenProvenance("region", self.n_regions, input_shape=shape)
