"""Image encoders (2D and 3D): a CNN feature map, flattened into one token per grid cell."""

from __future__ import annotations

import math

import torch
from torch import nn

from modalmerge.models.layers import Encoder, GridPositionEmbedding, TokenProvenance, sample_shape
from modalmerge.models.registry import register_encoder


def _halve(n: int) -> int:
    # size after a kernel-3 (or 1), padding-1 (or 0), stride-2 convolution / pooling
    return (n - 1) // 2 + 1


class _GridEncoder(Encoder):
    """Shared tail: feature map (B, C, *grid) -> tokens (B, prod(grid), dim) + grid positions."""

    def __init__(self, input_shape, dim: int, spatial_dims: int, feature_channels: int):
        super().__init__()
        self.input_shape = sample_shape(input_shape, spatial_dims + 1, "image")
        self.spatial_dims = spatial_dims
        self.to_tokens = nn.Sequential(nn.Linear(feature_channels, dim), nn.LayerNorm(dim))
        self.position = GridPositionEmbedding(spatial_dims, dim)

    def grid_shape(self, spatial_shape: tuple[int, ...]) -> tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C, *spatial) -> tokens (B, prod(grid_shape), dim)."""
        fmap = self.features(x)  # (B, C_f, *grid)
        grid = tuple(fmap.shape[2:])
        tokens = self.to_tokens(fmap.flatten(2).transpose(1, 2))  # (B, n_tokens, dim)
        return tokens + self.position(grid).to(tokens.dtype)

    def token_provenance(self, input_shape=None) -> TokenProvenance:
        """Provenance of the tokens for an image of ``input_shape`` ((C, *spatial), batch optional)."""
        shape = self.input_shape if input_shape is None else input_shape
        shape = sample_shape(shape, self.spatial_dims + 1, "image")
        grid = self.grid_shape(shape[1:])
        return TokenProvenance("image_grid", math.prod(grid), grid_shape=grid, input_shape=shape)


class ResNetEncoder(_GridEncoder):
    """MONAI ResNet backbone whose last feature map becomes the tokens.

    Parameters
    ----------
    input_shape : tuple
        ``(C, D, H, W)`` (3D) or ``(C, H, W)`` (2D); ``spatial_dims`` follows from it.
    dim : int
        Token size.
    depth : {18, 34, 50}
        ResNet depth.
    feature_layer : {"auto", "layer3", "layer4"}
        Which stage's map becomes the tokens. ``auto`` takes ``layer4`` unless its
        grid would hold fewer than ``min_tokens`` cells, then ``layer3`` (layer4 is
        then dropped from the network).
    conv1_stride : int
        Stride of the first convolution (MONAI default 1: the maps are 1/16 of the
        input at layer4, 1/8 at layer3; 2 halves them again).
    norm : str or tuple
        MONAI normalisation name, e.g. ``"batch"``, ``"instance"`` or
        ``("group", {"num_groups": 8})``.
    """

    fixed_options = ("depth",)  # resnet18/34/50 choose it

    def __init__(
        self,
        input_shape,
        dim: int,
        depth: int = 18,
        feature_layer: str = "auto",
        min_tokens: int = 8,
        conv1_stride: int = 1,
        norm: str | tuple = "batch",
    ):
        spatial_dims = len(input_shape) - 1
        if spatial_dims not in (2, 3):
            raise ValueError(
                f"image input shape must be (C, H, W) or (C, D, H, W), got {input_shape}"
            )
        if feature_layer not in ("auto", "layer3", "layer4"):
            raise ValueError(f"feature_layer must be auto, layer3 or layer4, got {feature_layer!r}")
        # imported here, when a ResNet is built: at module level every import paid ~2 s
        from monai.networks import nets

        builders = {18: nets.resnet18, 34: nets.resnet34, 50: nets.resnet50}
        if depth not in builders:
            raise ValueError(f"ResNet depth must be one of {sorted(builders)}, got {depth}")
        self.conv1_stride = conv1_stride
        spatial = tuple(input_shape[1:])
        if feature_layer == "auto":
            n4 = math.prod(self._grid(spatial, 4))
            feature_layer = "layer4" if n4 >= min_tokens else "layer3"
        self.feature_layer = feature_layer
        expansion = 4 if depth == 50 else 1
        channels = (512 if feature_layer == "layer4" else 256) * expansion
        super().__init__(input_shape, dim, spatial_dims, channels)
        self.backbone = builders[depth](
            spatial_dims=spatial_dims,
            n_input_channels=input_shape[0],
            conv1_t_stride=conv1_stride,
            feed_forward=False,
            norm=norm,
        )
        if feature_layer == "layer3":  # unused weights would break DistributedDataParallel
            self.backbone.layer4 = nn.Identity()

    def _grid(self, spatial: tuple[int, ...], last_layer: int) -> tuple[int, ...]:
        grid = []
        for n in spatial:
            n = (n - 1) // self.conv1_stride + 1  # conv1: kernel 7, padding 3
            n = _halve(n)  # max pool
            for _ in range(2, last_layer + 1):  # layer2..: stride 2
                n = _halve(n)
            grid.append(n)
        return tuple(grid)

    def grid_shape(self, spatial_shape):
        return self._grid(tuple(spatial_shape), 4 if self.feature_layer == "layer4" else 3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        x = b.act(b.bn1(b.conv1(x)))
        if not b.no_max_pool:
            x = b.maxpool(x)
        x = b.layer3(b.layer2(b.layer1(x)))
        return b.layer4(x)


@register_encoder("image", "resnet18")
class ResNet18Encoder(ResNetEncoder):
    """ResNet-18 image encoder (see :class:`ResNetEncoder`)."""

    def __init__(self, input_shape, dim: int, **options):
        super().__init__(input_shape, dim, depth=18, **options)


@register_encoder("image", "resnet34")
class ResNet34Encoder(ResNetEncoder):
    """ResNet-34 image encoder (see :class:`ResNetEncoder`)."""

    def __init__(self, input_shape, dim: int, **options):
        super().__init__(input_shape, dim, depth=34, **options)


@register_encoder("image", "resnet50")
class ResNet50Encoder(ResNetEncoder):
    """ResNet-50 (bottleneck) image encoder (see :class:`ResNetEncoder`)."""

    def __init__(self, input_shape, dim: int, **options):
        super().__init__(input_shape, dim, depth=50, **options)


@register_encoder("image", "cnn")
class CNNEncoder(_GridEncoder):
    """A light CNN for small images: ``n_blocks`` stride-2 conv blocks (GroupNorm, GELU).

    Parameters
    ----------
    input_shape : tuple
        ``(C, D, H, W)`` or ``(C, H, W)``.
    dim : int
        Token size.
    channels : int
        Channels of the first block, doubled by each following block.
    n_blocks : int or "auto"
        Number of stride-2 blocks; the grid is the input halved ``n_blocks`` times
        (rounded up). ``"auto"`` (default) halves at most three times while the
        smallest side of the grid stays >= ``min_side``, so small inputs keep
        enough tokens for attention to localise (an 8³ image gives a 4³ grid).
    min_side : int
        Smallest grid side ``"auto"`` allows.
    """

    def __init__(
        self,
        input_shape,
        dim: int,
        channels: int = 16,
        n_blocks: int | str = "auto",
        min_side: int = 4,
    ):
        spatial_dims = len(input_shape) - 1
        if spatial_dims not in (2, 3):
            raise ValueError(
                f"image input shape must be (C, H, W) or (C, D, H, W), got {input_shape}"
            )
        if n_blocks == "auto":
            n_blocks, side = 1, min(input_shape[1:])
            while n_blocks < 3 and _halve(_halve(side)) >= min_side:
                side, n_blocks = _halve(side), n_blocks + 1
        if not isinstance(n_blocks, int) or n_blocks < 1:
            raise ValueError(f"n_blocks must be a positive integer or 'auto', got {n_blocks!r}")
        widths = [channels * 2**i for i in range(n_blocks)]
        super().__init__(input_shape, dim, spatial_dims, widths[-1])
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        blocks, c_in = [], input_shape[0]
        for c_out in widths:
            blocks += [
                conv(c_in, c_out, 3, stride=2, padding=1),
                nn.GroupNorm(min(8, c_out), c_out),
                nn.GELU(),
                conv(c_out, c_out, 3, padding=1),
                nn.GroupNorm(min(8, c_out), c_out),
                nn.GELU(),
            ]
            c_in = c_out
        self.n_blocks = n_blocks
        self.net = nn.Sequential(*blocks)

    def grid_shape(self, spatial_shape):
        grid = []
        for n in spatial_shape:
            for _ in range(self.n_blocks):
                n = _halve(n)
            grid.append(n)
        return tuple(grid)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
