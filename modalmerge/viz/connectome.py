"""Connectivity matrices drawn as a matrix and as a glass-brain connectome.

Drawing lives here, not beside :func:`modalmerge.data.parcellation.connectivity.connectivity`,
so the data stages never import plotting code (their code fingerprints stay narrow).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from modalmerge.viz._common import new_figure
from modalmerge.viz.figures import save_figure


def plot_connectivity(
    matrix: np.ndarray,
    labels: Sequence[str] | None = None,
    coords: np.ndarray | None = None,
    output: str | Path | None = None,
    edge_threshold: str | float = "95%",
    title: str | None = None,
    vmax: float | None = None,
):
    """Draw a connectivity matrix, and the connectome at ``coords`` when given.

    Parameters
    ----------
    matrix : ndarray (R, R)
    labels : sequence of R str, optional
        Region names for the matrix axes (omitted when R > 40, unreadable).
    coords : ndarray (R, 3), optional
        MNI mm centres; adds a glass-brain connectome panel.
    output : path, optional
        Save the figure there (PNG by the suffix) and close it.
    edge_threshold : str or float
        Edges drawn in the connectome (nilearn's syntax, e.g. ``"95%"``).
    title : str, optional
    vmax : float, optional
        Colour limit (symmetric); by default the largest absolute off-diagonal value.

    Returns
    -------
    matplotlib.figure.Figure
        Agg-backed, never registered with pyplot (as every ModalMerge figure).
    """
    from nilearn import plotting

    matrix = np.asarray(matrix, float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be (R, R), got {matrix.shape}")
    panels = 2 if coords is not None else 1
    fig = new_figure(6 * panels, 5)
    axes = fig.subplots(1, panels, squeeze=False)
    shown = np.array(matrix)
    np.fill_diagonal(shown, 0.0)
    names = list(labels) if labels is not None and len(labels) <= 40 else None
    limit = vmax or float(np.abs(shown).max()) or 1.0
    plotting.plot_matrix(
        shown, labels=names, axes=axes[0, 0], colorbar=True, vmax=limit, vmin=-limit
    )
    if coords is not None:
        coords = np.asarray(coords, float)
        if coords.shape != (matrix.shape[0], 3):
            raise ValueError(f"coords must be ({matrix.shape[0]}, 3), got {coords.shape}")
        plotting.plot_connectome(
            shown,
            coords,
            edge_threshold=edge_threshold,
            axes=axes[0, 1],
            display_mode="ortho",
            colorbar=False,
            edge_vmin=-limit,
            edge_vmax=limit,
        )
    if title:
        fig.suptitle(title)
    if output is not None:
        save_figure(fig, output, dpi=110)
    return fig


def plot_sc_fc_prediction(
    sc: np.ndarray,
    true_fc: np.ndarray,
    predicted_fc: np.ndarray,
    labels: Sequence[str] | None = None,
    coords: np.ndarray | None = None,
    output: str | Path | None = None,
    title: str | None = None,
    edge_threshold: str | float = "95%",
    condition_title: str = "structural connectome",
):
    """One held-out subject: SC | true FC | predicted FC, and predicted vs true edges.

    ``condition_title`` names the first panel (another condition graph: e.g. MPC).

    With ``coords`` (R, 3) a second row draws the true and predicted FC as
    glass-brain connectomes (:func:`nilearn.plotting.plot_connectome`) at the
    region centroids. Diagonals are blanked; both FC panels share one colour scale.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from nilearn import plotting

    mats = [np.array(m, dtype=float) for m in (sc, true_fc, predicted_fc)]
    n = mats[0].shape[0]
    if any(m.shape != (n, n) for m in mats):
        raise ValueError(
            f"SC, true FC and predicted FC must all be (R, R): {[m.shape for m in mats]}"
        )
    for m in mats:
        np.fill_diagonal(m, 0.0)
    rows = 2 if coords is not None else 1
    fig = new_figure(22, 5 * rows)
    axes = fig.subplots(rows, 4, squeeze=False)
    names = list(labels) if labels is not None and len(labels) <= 40 else None
    fc_limit = float(max(np.abs(mats[1]).max(), np.abs(mats[2]).max())) or 1.0
    for ax, m, name, limit in zip(
        axes[0, :3],
        mats,
        (condition_title, "true FC", "predicted FC"),
        (float(np.abs(mats[0]).max()) or 1.0, fc_limit, fc_limit),
        strict=True,
    ):
        plotting.plot_matrix(m, labels=names, axes=ax, colorbar=True, vmax=limit, vmin=-limit)
        ax.set_title(name)
    i, j = np.triu_indices(n, 1)
    true_edges, pred_edges = mats[1][i, j], mats[2][i, j]
    ax = axes[0, 3]
    ax.scatter(true_edges, pred_edges, s=6, alpha=0.6)
    lo, hi = (
        float(min(true_edges.min(), pred_edges.min())),
        float(max(true_edges.max(), pred_edges.max())),
    )
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
    r = (
        float(np.corrcoef(true_edges, pred_edges)[0, 1])
        if true_edges.std() and pred_edges.std()
        else 0.0
    )
    ax.set(xlabel="true FC edge", ylabel="predicted FC edge", title=f"edges: r = {r:.2f}")
    if coords is not None:
        _glass_brains(axes[1], mats[1:], coords, fc_limit, edge_threshold)
    if title:
        fig.suptitle(title)
    if output is not None:
        save_figure(fig, output, dpi=90)
    return fig


def _glass_brains(axes, mats, coords, limit: float, edge_threshold) -> None:
    """True and predicted FC as glass-brain connectomes on the first two of ``axes``."""
    from nilearn import plotting

    coords = np.asarray(coords, float)
    n = mats[0].shape[0]
    if coords.shape != (n, 3):
        raise ValueError(f"coords must be ({n}, 3), got {coords.shape}")
    for ax, m, name in zip(axes[:2], mats, ("true FC", "predicted FC"), strict=True):
        plotting.plot_connectome(
            m, coords, edge_threshold=edge_threshold, axes=ax, display_mode="ortho",
            colorbar=False, edge_vmin=-limit, edge_vmax=limit, title=name,
        )  # fmt: skip
    for ax in axes[2:]:
        ax.set_axis_off()
