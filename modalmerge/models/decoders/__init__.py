"""Decoders: learned target queries, once conditioned, -> a target modality; they register on import."""

from modalmerge.models.decoders import denoisers, image, tabular, text, time_series  # noqa: F401
