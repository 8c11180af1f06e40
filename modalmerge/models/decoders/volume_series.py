"""Deterministic volume-series decoder: a 4D window ``(T, D, H, W)`` as an image with T channels.

The window's volumes are the channels of one 3D image, so the image decoder's coarse
block queries and transposed convolutions produce it; the diffusion path for images
(a U-Net over ``(C, D, H, W)``) generates the same layout with ``C = T``.
"""

from __future__ import annotations

from modalmerge.models.decoders.image import DeconvImageDecoder
from modalmerge.models.layers import sample_shape
from modalmerge.models.registry import register_decoder


@register_decoder("volume_series", "deconv")
class VolumeSeriesDecoder(DeconvImageDecoder):
    """Block queries over the volume grid -> window ``(B, T, D, H, W)`` (T as channels).

    Parameters as :class:`~modalmerge.models.decoders.image.DeconvImageDecoder`, with
    ``output_shape`` the window ``(T, D, H, W)``; its queries are ``image_grid``
    blocks of the volume, each predicting its block in every volume of the window.
    """

    def __init__(
        self,
        output_shape,
        dim: int,
        n_upsample: int | None = None,
        max_queries: int = 256,
        min_channels: int = 16,
    ):
        shape = sample_shape(output_shape, 4, "volume_series")
        super().__init__(shape, dim, n_upsample, max_queries, min_channels)
