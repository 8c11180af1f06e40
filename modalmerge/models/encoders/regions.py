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

``statistics: true`` adds, per region and raw channel, the within-region
quantiles ``QUANTILES`` and standard deviation of the voxel intensities beside
the means, and the same statistics (mean included) minus their average over the
subject's regions: a region's grey-matter intensity shows in its quantiles
beside the mean, which partial volumes with white matter and CSF dominate, and
relative to the subject's other regions once shifts common to the whole brain
(age, atrophy, residual bias) are removed. ``channels: 0`` drops the CNN (tokens from the raw-channel
statistics alone).
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
        Width of the CNN (two 3×3(×3) convolutions at full resolution); 0: no CNN.
    statistics : bool
        Add each raw channel's within-region quantiles (``QUANTILES``) and SD.
    standardize : bool
        Standardise every (region, feature) across subjects before the projection
        (batch normalisation without a learned scale, running statistics of the
        training batches at evaluation): between-subject differences of a few per cent
        then reach the tokens at unit scale instead of as a small ripple on each
        region's typical value.
    """

    QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)

    def __init__(
        self,
        input_shape,
        dim: int,
        n_regions: int,
        channels: int = 16,
        statistics: bool = False,
        standardize: bool = False,
    ):
        super().__init__()
        spatial_dims = len(input_shape) - 1
        if spatial_dims not in (2, 3) or input_shape[0] < 2:
            raise ValueError(
                "region_cnn needs an image (C, D, H, W) or (C, H, W) whose last channel holds "
                f"the atlas labels (C >= 2, e.g. condition_channels: [T1w, dseg]), got {input_shape}"
            )
        if not isinstance(n_regions, int) or n_regions < 1:
            raise ValueError(f"region_cnn: n_regions must be a positive integer, got {n_regions!r}")
        if not isinstance(channels, int) or channels < 0:
            raise ValueError(f"region_cnn: channels must be an integer >= 0, got {channels!r}")
        self.input_shape = sample_shape(input_shape, spatial_dims + 1, "image")
        self.spatial_dims = spatial_dims
        self.n_regions = n_regions
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        c_in = input_shape[0] - 1
        self.statistics = bool(statistics)
        self.net = None
        if channels:
            self.net = nn.Sequential(
                conv(c_in, channels, 3, padding=1),
                nn.GroupNorm(min(8, channels), channels),
                nn.GELU(),
                conv(channels, channels, 3, padding=1),
                nn.GroupNorm(min(8, channels), channels),
                nn.GELU(),
            )
        n_stats = c_in * (2 * len(self.QUANTILES) + 3) if self.statistics else 0
        n_features = channels + c_in + n_stats
        self.standardize = (
            nn.BatchNorm1d(n_regions * n_features, affine=False) if standardize else None
        )
        self.to_tokens = nn.Sequential(nn.Linear(n_features, dim), nn.LayerNorm(dim))
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
        """Image (B, C, *spatial) -> per-region features (B, R, F): the mean CNN features
        and raw channels, then (``statistics``) each raw channel's quantiles and SD."""
        image, labels = x[:, :-1], x[:, -1]
        parts = [image] if self.net is None else [self.net(image), image]
        features = torch.cat(parts, dim=1).flatten(2)  # (B, F, N)
        masks = self.region_masks(labels).to(features.dtype)  # (B, R, N)
        pooled = torch.bmm(masks, features.transpose(1, 2))
        if not self.statistics:
            return pooled
        inside = (masks > 0).unsqueeze(2)  # (B, R, 1, N)
        raw = image.flatten(2).unsqueeze(1)  # (B, 1, C, N)
        values = torch.where(inside, raw, torch.full_like(raw, float("nan")))  # (B, R, C, N)
        q = torch.tensor(self.QUANTILES, dtype=values.dtype, device=values.device)
        quantiles = torch.nanquantile(values, q, dim=3).nan_to_num(0.0)  # (Q, B, R, C)
        mean = pooled[..., -image.shape[1] :]
        sd = torch.bmm(masks, features[:, -image.shape[1] :].transpose(1, 2) ** 2) - mean**2
        sd = sd.clamp_min(0.0).sqrt()
        stats = torch.cat([mean, quantiles.permute(1, 2, 3, 0).flatten(2), sd], dim=2)
        centred = stats - stats.mean(dim=1, keepdim=True)  # relative to the subject's regions
        return torch.cat([pooled, stats[..., mean.shape[2] :], centred], dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C, *spatial) -> tokens (B, R, dim), token r = atlas label r + 1."""
        pooled = self.pooled(x)
        if self.standardize is not None:
            pooled = self.standardize(pooled.flatten(1)).view(pooled.shape)
        tokens = self.to_tokens(pooled)
        return tokens + self.region_embedding.weight.to(tokens.dtype)

    def token_provenance(self, input_shape=None) -> TokenProvenance:
        """One ``region`` token per atlas label 1..R, in label order."""
        shape = self.input_shape if input_shape is None else input_shape
        shape = sample_shape(shape, self.spatial_dims + 1, "image")
        return TokenProvenance("region", self.n_regions, input_shape=shape)
