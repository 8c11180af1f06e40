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
