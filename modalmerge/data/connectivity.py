"""Functional connectivity between regions, and figures at atlas coordinates.

Thin wrappers over :class:`nilearn.connectome.ConnectivityMeasure` (Ledoit-Wolf
covariance) so that every stage computes connectivity the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

KINDS = ("correlation", "partial correlation", "tangent", "covariance", "precision")


def connectivity(
    timeseries: np.ndarray | Sequence[np.ndarray],
    kind: str = "correlation",
    discard_diagonal: bool = False,
) -> np.ndarray:
    """Connectivity matrices of one or more subjects.

    Parameters
    ----------
    timeseries : ndarray (T, R) or sequence of (T_i, R) arrays
        ROI time series; one array per subject.
    kind : {"correlation", "partial correlation", "tangent", "covariance", "precision"}
        ``tangent`` projects each subject at the group's geometric mean and
        needs at least two subjects.
    discard_diagonal : bool
        Set the diagonal to 0 (self-connections carry no information).

    Returns
    -------
    ndarray
        (R, R) for a single array, else (n_subjects, R, R); float64.
    """
    from nilearn.connectome import ConnectivityMeasure

    if kind not in KINDS:
        raise ValueError(f"connectivity kind must be one of {KINDS}, not {kind!r}")
    single = isinstance(timeseries, np.ndarray) and timeseries.ndim == 2
    series = (
        [np.asarray(timeseries, float)] if single else [np.asarray(t, float) for t in timeseries]
    )
    for i, ts in enumerate(series):
        if ts.ndim != 2 or ts.shape[0] < 3:
            raise ValueError(f"time series {i} must be (T >= 3, R), got shape {ts.shape}")
        if not np.isfinite(ts).all():
            raise ValueError(f"time series {i} holds NaN or inf")
    if len({ts.shape[1] for ts in series}) != 1:
        raise ValueError(
            f"time series disagree on the number of regions: {[ts.shape[1] for ts in series]}"
        )
    if kind == "tangent" and len(series) < 2:
        raise ValueError("tangent connectivity needs at least two subjects")
    measure = ConnectivityMeasure(kind=kind, standardize="zscore_sample")
    matrices = measure.fit_transform(series)
    if discard_diagonal:
        idx = np.arange(matrices.shape[-1])
        matrices[:, idx, idx] = 0.0
    return matrices[0] if single else matrices


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

    from modalmerge.viz._common import new_figure

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
        from modalmerge.viz.figures import save_figure

        save_figure(fig, output, dpi=110)
    return fig
