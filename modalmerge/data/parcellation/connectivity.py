"""Functional connectivity between regions: the one definition every stage uses
(parcellation outputs, evaluation's FC similarity, figures; drawing:
:mod:`modalmerge.viz.connectome`).

``correlation`` is the plain sample Pearson correlation matrix, computed exactly:
symmetric, 1 on the diagonal, and 0 for every entry of an ROI that is constant
over time (its correlation is undefined; 0 rather than NaN, as the evaluation
metrics score constant series). The kinds that invert or project a covariance
(``partial correlation``, ``tangent``, ``precision``, and ``covariance``) go
through :class:`nilearn.connectome.ConnectivityMeasure` with its Ledoit-Wolf
shrunk covariance, which stays invertible when T < R.

Why exact Pearson for ``correlation``: it is what "FC" means in the scores and
the figures, and shrinkage would scale every off-diagonal entry by the
estimated shrinkage (so the parcellated FC and the FC the evaluation compares
would differ for the same series). Before issue #10 the parcellate stage used
nilearn's shrunk correlation and the evaluation its own exact one.
"""

from __future__ import annotations

from collections.abc import Sequence

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
        ROI time series; one array per subject. ``correlation`` needs T >= 2,
        the other kinds T >= 3.
    kind : {"correlation", "partial correlation", "tangent", "covariance", "precision"}
        ``correlation``: the exact Pearson matrix (see the module docstring).
        ``tangent`` projects each subject at the group's geometric mean and
        needs at least two subjects.
    discard_diagonal : bool
        Set the diagonal to 0 (self-connections carry no information).

    Returns
    -------
    ndarray
        (R, R) for a single array, else (n_subjects, R, R); float64.
    """
    if kind not in KINDS:
        raise ValueError(f"connectivity kind must be one of {KINDS}, not {kind!r}")
    single = isinstance(timeseries, np.ndarray) and timeseries.ndim == 2
    series = (
        [np.asarray(timeseries, float)] if single else [np.asarray(t, float) for t in timeseries]
    )
    min_t = 2 if kind == "correlation" else 3
    for i, ts in enumerate(series):
        if ts.ndim != 2 or ts.shape[0] < min_t:
            raise ValueError(f"time series {i} must be (T >= {min_t}, R), got shape {ts.shape}")
        if not np.isfinite(ts).all():
            raise ValueError(f"time series {i} holds NaN or inf")
    if len({ts.shape[1] for ts in series}) != 1:
        raise ValueError(
            f"time series disagree on the number of regions: {[ts.shape[1] for ts in series]}"
        )
    if kind == "tangent" and len(series) < 2:
        raise ValueError("tangent connectivity needs at least two subjects")
    if kind == "correlation":
        matrices = np.stack([_pearson(ts) for ts in series])
    else:
        from nilearn.connectome import ConnectivityMeasure

        measure = ConnectivityMeasure(kind=kind, standardize="zscore_sample")
        matrices = measure.fit_transform(series)
    if discard_diagonal:
        idx = np.arange(matrices.shape[-1])
        matrices[:, idx, idx] = 0.0
    return matrices[0] if single else matrices


def _pearson(x: np.ndarray) -> np.ndarray:
    """The ROI-by-ROI Pearson matrix of ``x`` (T, R); constant ROIs give 0 off the diagonal."""
    xc = x - x.mean(axis=0)
    norm = np.sqrt((xc * xc).sum(axis=0))
    varying = (np.ptp(x, axis=0) > 0) & (norm > 0)
    z = np.divide(xc, norm, out=np.zeros_like(xc), where=varying)
    fc = np.clip(z.T @ z, -1.0, 1.0)
    np.fill_diagonal(fc, 1.0)
    return fc
