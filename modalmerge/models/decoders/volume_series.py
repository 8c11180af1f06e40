"""Deterministic volume-series decoder: a 4D window ``(T, D, H, W)`` as an image with T channels.

The window's volumes are the channels of one 3D image, so the image decoder's coarse
block queries and transposed convolutions produce it; the diffusion path for images
(a U-Net over ``(C, D, H, W)``) generates the same layout with ``C = T``.
"""

from __future__ import annotations

from modalmerge.models.decoders.image import DeconvImageDecoder
from modalmerge.models.layers import sample_shape, sinusoidal_embedding
from modalmerge.models.registry import register_decoder


@register_decoder("volume_series", "deconv")
class VolumeSeriesDecoder(DeconvImageDecoder):
    """Block queries over the volume grid -> window ``(B, T, D, H, W)`` (T as channels).

    Parameters as :class:`~modalmerge.models.decoders.image.DeconvImageDecoder`, with
    ``output_shape`` the window ``(T, D, H, W)``; its queries are ``image_grid``
    blocks of the volume, each predicting its block in every volume of the window.
    ``window_start``: add the sinusoidal embedding of the window's start (``time_offset``,
    in volumes) to every query, so the prediction can depend on where in the run the
    window lies (off by default: the model is then as before).
    """

    def __init__(
        self,
        output_shape,
        dim: int,
        n_upsample: int | None = None,
        max_queries: int = 256,
        min_channels: int = 16,
        window_start: bool = False,
    ):
        shape = sample_shape(output_shape, 4, "volume_series")
        super().__init__(shape, dim, n_upsample, max_queries, min_channels)
        self.window_start, self.start_dim = bool(window_start), int(dim)

    def queries(self, batch_size: int, target=None, time_offset=None):
        """Block queries (B, n_queries, dim), with the window start's embedding if asked."""
        q = super().queries(batch_size, target=target, time_offset=time_offset)
        if not self.window_start or time_offset is None:
            return q
        start = sinusoidal_embedding(time_offset.float(), self.start_dim).to(q.dtype)
        return q + start[:, None, :]
