"""Encoders: one modality -> tokens ``(B, n_tokens, dim)``; they register on import."""

from modalmerge.models.encoders import (  # noqa: F401
    graph,
    image,
    point_cloud,
    regions,
    tabular,
    text,
    time_series,
    volume_series,
)
