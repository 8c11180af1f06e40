"""Encoders: one modality -> tokens ``(B, n_tokens, dim)``; they register on import."""

from modalmerge.models.encoders import graph, image, regions, tabular, text, time_series  # noqa: F401
