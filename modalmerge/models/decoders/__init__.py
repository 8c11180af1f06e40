"""Decoders: learned target queries, once conditioned, -> a target modality; they register on import."""

from modalmerge.models.decoders import (  # noqa: F401
    denoisers,
    graph,
    image,
    point_cloud,
    tabular,
    text,
    time_series,
    volume_series,
)
