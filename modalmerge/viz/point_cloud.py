"""Point-cloud attention drawn on the surface: each point coloured by its centroid token's weight."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from scipy.spatial import cKDTree

#: (title, elevation, azimuth) of the views: lateral left, dorsal, lateral right (RAS mm)
VIEWS = (("left", 0.0, 180.0), ("top", 90.0, -90.0), ("right", 0.0, 0.0))


def attention_on_points(
    points: np.ndarray,
    centroids: np.ndarray,
    weights: np.ndarray,
    title: str = "attention on the surface",
) -> Figure:
    """Scatter a surface cloud in three views, each point coloured by its nearest centroid's weight.

    Parameters
    ----------
    points : ndarray, shape (N, 3 + F) or (N, 3)
        The cloud (xyz in mm first).
    centroids : ndarray, shape (M, 3)
        The condition tokens' centroids (``encoder.token_coordinates``), mm.
    weights : ndarray, shape (M,)
        One attention weight per token (e.g. averaged over heads and target queries).
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Three 3D axes (left, top, right views) and a colour bar.
    """
    xyz = np.asarray(points, dtype=float)[:, :3]
    centroids = np.asarray(centroids, dtype=float)
    weights = np.asarray(weights, dtype=float).ravel()
    if centroids.ndim != 2 or centroids.shape[1] != 3 or len(weights) != len(centroids):
        raise ValueError(
            f"need centroids (M, 3) and M weights, got {centroids.shape} and {weights.shape}"
        )
    # each point takes the weight of the token whose neighbourhood (nearest centroid) holds it
    owner = cKDTree(centroids).query(xyz)[1]
    colour = weights[owner]
    fig = Figure(figsize=(12, 4.2))
    scatter = None
    for k, (name, elev, azim) in enumerate(VIEWS):
        ax = fig.add_subplot(1, 3, k + 1, projection="3d")
        scatter = ax.scatter(*xyz.T, c=colour, cmap="hot", s=4, vmin=0, vmax=colour.max() or 1.0)
        ax.scatter(*centroids.T, c="cyan", s=10, marker="x", linewidths=0.6)
        ax.view_init(elev=elev, azim=azim)
        ax.set_title(name)
        ax.set_axis_off()
        ax.set_box_aspect(np.ptp(xyz, axis=0).clip(1e-6))
    fig.colorbar(scatter, ax=fig.axes, shrink=0.6, label="attention (nearest centroid token)")
    fig.suptitle(title)
    return fig


__all__ = ["attention_on_points"]
