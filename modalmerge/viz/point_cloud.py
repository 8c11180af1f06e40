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


def cloud_prediction(
    true: np.ndarray,
    predicted: np.ndarray,
    feature: str = "feature 0",
    title: str = "point cloud: true and predicted",
) -> Figure:
    """A held-out subject's true cloud (top row) above the predicted or generated one
    (bottom row), three views each, points coloured by their first feature on one scale.

    Works for both point-cloud decoders: ``values`` (the prediction sits on the true
    points; only the colours differ) and ``set`` (a generated set: the positions differ).

    Parameters
    ----------
    true, predicted : ndarray, shape (N, 3 + F) and (M, 3 + F)
        Clouds, xyz in mm first; ``F = 0`` draws them in one colour.
    feature : str
        Name of the first feature (colour bar label).
    """
    clouds = [np.asarray(c, dtype=float) for c in (true, predicted)]
    if any(c.ndim != 2 or c.shape[1] < 3 for c in clouds):
        raise ValueError(f"need clouds (N, 3 + F), got {[c.shape for c in clouds]}")
    coloured = all(c.shape[1] > 3 for c in clouds)
    values = np.concatenate([c[:, 3] for c in clouds]) if coloured else np.zeros(1)
    low, high = np.percentile(values, [2, 98]) if coloured else (0.0, 1.0)
    fig = Figure(figsize=(12, 8))
    scatter = None
    xyz_all = np.concatenate([c[:, :3] for c in clouds])
    for row, (cloud, name) in enumerate(zip(clouds, ("true", "predicted"), strict=True)):
        for k, (view, elev, azim) in enumerate(VIEWS):
            ax = fig.add_subplot(2, 3, 3 * row + k + 1, projection="3d")
            colour = cloud[:, 3] if coloured else "tab:blue"
            scatter = ax.scatter(
                *cloud[:, :3].T, c=colour, cmap="viridis", s=4, vmin=low, vmax=high
            )
            ax.view_init(elev=elev, azim=azim)
            ax.set_title(f"{name}: {view}")
            ax.set_axis_off()
            ax.set_xlim(xyz_all[:, 0].min(), xyz_all[:, 0].max())
            ax.set_ylim(xyz_all[:, 1].min(), xyz_all[:, 1].max())
            ax.set_zlim(xyz_all[:, 2].min(), xyz_all[:, 2].max())
            ax.set_box_aspect(np.ptp(xyz_all, axis=0).clip(1e-6))
    if coloured:
        fig.colorbar(scatter, ax=fig.axes, shrink=0.5, label=feature)
    fig.suptitle(title)
    return fig


__all__ = ["attention_on_points", "cloud_prediction"]
