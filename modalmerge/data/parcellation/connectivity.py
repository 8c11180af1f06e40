"""Functional connectivity between regions (figures: :mod:`modalmerge.viz.connectome`).

Thin wrappers over :class:`nilearn.connectome.ConnectivityMeasure` (Ledoit-Wolf
covariance) so that every stage computes connectivity the same way.
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
