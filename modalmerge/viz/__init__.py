"""Figures: attention drawn back onto the inputs, predictions against the truth, summaries.

Every function returns an Agg-backed :class:`matplotlib.figure.Figure` that pyplot
never sees; :func:`save_figure` writes one atomically and releases it.
"""

from modalmerge.viz.attention import attention_peak, project_to_image
from modalmerge.viz.figures import (
    attention_on_anatomy,
    connectivity_comparison,
    learning_curves,
    roi_attention_matrix,
    save_figure,
    summary_chart,
)
from modalmerge.viz.predictions import (
    plot_image_prediction,
    plot_tabular_prediction,
    plot_text_prediction,
    plot_timeseries_prediction,
)
from modalmerge.viz.surface import (
    attention_on_surface,
    dk_surface_labels,
    region_values_to_vertices,
    surface_region_map,
)
from modalmerge.viz.visualizer import Visualizer

__all__ = [
    "Visualizer",
    "attention_on_anatomy",
    "attention_on_surface",
    "attention_peak",
    "connectivity_comparison",
    "dk_surface_labels",
    "learning_curves",
    "plot_image_prediction",
    "plot_tabular_prediction",
    "plot_text_prediction",
    "plot_timeseries_prediction",
    "project_to_image",
    "region_values_to_vertices",
    "roi_attention_matrix",
    "save_figure",
    "summary_chart",
    "surface_region_map",
]
