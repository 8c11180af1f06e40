"""Scores for predicted ROI time series, and the noise ceiling they are judged against.

Every function takes plain numpy arrays and computes in float64. Inputs are
checked first: a shape mismatch or a NaN/inf value raises ``ValueError``.

Time-series arrays are shaped ``(n_series, T, R)``: one row per test subject (or
per window), ``T`` time points (volumes), ``R`` regions of interest. Correlations
run over time, separately for every series and ROI.

Constant series
---------------
A Pearson correlation with a series that does not vary over time is undefined
(0/0). Functions that correlate take ``on_constant``:

``"zero"`` (default)
    the correlation is reported as 0: a flat prediction explains none of the
    variation over time, so it scores like a prediction with no linear relation.
    :func:`time_series_metrics` counts such series in ``n_constant_series`` so
    the substitution is visible in ``metrics.json``.
``"raise"``
    raise ``ValueError`` naming how many series are constant and the first one.

A series is constant when its peak-to-peak range over time is exactly 0. For
R² a constant *true* series follows scikit-learn's ``force_finite`` convention
(1 for a perfect prediction, else 0) under ``"zero"``. No function returns NaN.

Image, text and tabular metrics live in :mod:`modalmerge.evaluation.modality_metrics`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

# the one definition of functional connectivity (exact Pearson for "correlation"),
# re-exported here for the scores and the figures
from modalmerge.data.parcellation.connectivity import connectivity

OnConstant = Literal["zero", "raise"]


def check_pair(
    pred: np.ndarray, true: np.ndarray, ndim: int | tuple[int, ...], what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``pred`` and ``true`` as finite float64 arrays of one shape.

    Parameters
    ----------
    pred, true : array_like
        The prediction and the truth.
    ndim : int or tuple of int
        Allowed numbers of dimensions.
    what : str
        Names the expected layout in error messages, e.g. ``"(n_series, T, R)"``.

    Raises
    ------
    ValueError
        On a dimension or shape mismatch, an empty array, or a NaN/inf value.
    """
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    out = []
    for name, x in (("pred", pred), ("true", true)):
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim not in allowed:
            raise ValueError(f"{name} must be shaped {what}; got shape {arr.shape}")
        if arr.size == 0:
            raise ValueError(f"{name} is empty (shape {arr.shape})")
        if not np.isfinite(arr).all():
            n_bad = int((~np.isfinite(arr)).sum())
            raise ValueError(f"{name} holds {n_bad} NaN or infinite values")
        out.append(arr)
    if out[0].shape != out[1].shape:
        raise ValueError(f"pred shape {out[0].shape} differs from true shape {out[1].shape}")
    return out[0], out[1]


def _check_time_series(pred, true) -> tuple[np.ndarray, np.ndarray]:
    pred, true = check_pair(pred, true, 3, "(n_series, T, R)")
    if pred.shape[1] < 2:
        raise ValueError(f"need at least 2 time points to correlate; got T={pred.shape[1]}")
    return pred, true


def _check_on_constant(on_constant: str) -> None:
    if on_constant not in ("zero", "raise"):
        raise ValueError(f"on_constant must be 'zero' or 'raise'; got {on_constant!r}")


def _correlate(a: np.ndarray, b: np.ndarray, axis: int, on_constant: OnConstant) -> np.ndarray:
    """Pearson r of ``a`` and ``b`` along ``axis`` (float64, same shape inputs)."""
    _check_on_constant(on_constant)
    ac = a - a.mean(axis=axis, keepdims=True)
    bc = b - b.mean(axis=axis, keepdims=True)
    num = (ac * bc).sum(axis=axis)
    den = np.sqrt((ac * ac).sum(axis=axis) * (bc * bc).sum(axis=axis))
    constant = (np.ptp(a, axis=axis) == 0) | (np.ptp(b, axis=axis) == 0) | (den == 0)
    if on_constant == "raise" and constant.any():
        first = tuple(int(i) for i in np.argwhere(constant)[0])
        raise ValueError(
            f"{int(constant.sum())} series are constant, so their correlation is undefined "
            f"(first at index {first}); pass on_constant='zero' to score them as r = 0"
        )
    r = np.divide(num, den, out=np.zeros_like(num), where=~constant)
    return np.clip(r, -1.0, 1.0)


def pearson_per_roi(
    pred: np.ndarray, true: np.ndarray, *, on_constant: OnConstant = "zero"
) -> np.ndarray:
    """Pearson correlation over time for every series and ROI.

    Parameters
    ----------
    pred, true : ndarray, shape (n_series, T, R)
        Predicted and true ROI time series (any units; r is scale-free).
    on_constant : {"zero", "raise"}
        What a series that is constant over time gives (see the module docstring).

    Returns
    -------
    ndarray, shape (n_series, R)
        Correlations in [-1, 1].
    """
    pred, true = _check_time_series(pred, true)
    return _correlate(pred, true, axis=1, on_constant=on_constant)


def r2_per_roi(
    pred: np.ndarray, true: np.ndarray, *, on_constant: OnConstant = "zero"
) -> np.ndarray:
    """Coefficient of determination over time for every series and ROI.

    ``R² = 1 - sum_t (true - pred)² / sum_t (true - mean_t true)²``, as
    :func:`sklearn.metrics.r2_score` computes it per output. It can be negative
    (worse than predicting each series' own mean) and depends on units, so pred
    and true must be on the same scale.

    Parameters
    ----------
    pred, true : ndarray, shape (n_series, T, R)
        Predicted and true ROI time series.
    on_constant : {"zero", "raise"}
        For a constant true series: ``"zero"`` gives 1 when the prediction
        matches it exactly and 0 otherwise (scikit-learn's ``force_finite``);
        ``"raise"`` raises ValueError.

    Returns
    -------
    ndarray, shape (n_series, R)
    """
    _check_on_constant(on_constant)
    pred, true = _check_time_series(pred, true)
    ss_res = ((true - pred) ** 2).sum(axis=1)
    ss_tot = ((true - true.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    constant = (np.ptp(true, axis=1) == 0) | (ss_tot == 0)
    if on_constant == "raise" and constant.any():
        first = tuple(int(i) for i in np.argwhere(constant)[0])
        raise ValueError(
            f"{int(constant.sum())} true series are constant, so R² is undefined "
            f"(first at (series, ROI) {first})"
        )
    r2 = 1.0 - np.divide(ss_res, ss_tot, out=np.zeros_like(ss_res), where=~constant)
    return np.where(constant, (ss_res == 0).astype(np.float64), r2)


def mse(pred: np.ndarray, true: np.ndarray, axis: int | tuple[int, ...] | None = None):
    """Mean squared error, in the squared units of the data.

    Parameters
    ----------
    pred, true : ndarray, any shape (the same for both)
    axis : int or tuple of int, optional
        Axes to average over; all of them by default.

    Returns
    -------
    float or ndarray
        A float when ``axis`` is None, else the array of means over ``axis``.
    """
    pred, true = check_pair(pred, true, tuple(range(1, 33)), "an array of any shape")
    out = ((pred - true) ** 2).mean(axis=axis)
    return float(out) if axis is None else out


def fc_similarity(
    pred: np.ndarray, true: np.ndarray, *, on_constant: OnConstant = "zero"
) -> np.ndarray:
    """How well predicted series reproduce functional connectivity.

    For each series, the Pearson r between the upper triangles (diagonal
    excluded) of ``connectivity(pred[i])`` and ``connectivity(true[i])``.

    Parameters
    ----------
    pred, true : ndarray, shape (n_series, T, R)
        Predicted and true ROI time series; ``R >= 3`` (two ROIs give one
        connection, which cannot be correlated).
    on_constant : {"zero", "raise"}
        What an upper triangle with no variation (e.g. from an all-constant
        prediction) gives.

    Returns
    -------
    ndarray, shape (n_series,)
        Similarities in [-1, 1]; 1 when the predicted connectivity matches the
        true one up to a positive affine map.
    """
    pred, true = _check_time_series(pred, true)
    if pred.shape[2] < 3:
        raise ValueError(f"fc_similarity needs at least 3 ROIs; got R={pred.shape[2]}")
    fc_pred = np.stack([connectivity(p) for p in pred])  # (n_series, R, R)
    fc_true = np.stack([connectivity(t) for t in true])
    return fc_matrix_similarity(fc_pred, fc_true, on_constant=on_constant)


def fc_matrix_similarity(
    pred_fc: np.ndarray, true_fc: np.ndarray, *, on_constant: OnConstant = "zero"
) -> np.ndarray | float:
    """The FC similarity of connectivity matrices: Pearson r of their upper triangles.

    The one definition of FC similarity; :func:`fc_similarity` computes the
    matrices from series first, the figures call this on mean matrices.

    Parameters
    ----------
    pred_fc, true_fc : ndarray, shape (R, R) or (n, R, R)
        Square matrices of one shape, ``R >= 3`` (two ROIs give one connection,
        which cannot be correlated); only the upper triangle (diagonal excluded) is read.
    on_constant : {"zero", "raise"}
        What an upper triangle with no variation gives: ``"zero"`` (default)
        scores it r = 0, as a constant series is scored (a flat prediction's
        connectivity is all zeros: it reproduces none of the pattern).

    Returns
    -------
    float or ndarray, shape (n,)
        A float for one pair of matrices; similarities in [-1, 1].
    """
    pred_fc, true_fc = check_pair(pred_fc, true_fc, (2, 3), "(R, R) or (n, R, R)")
    n_rois = pred_fc.shape[-1]
    if pred_fc.shape[-2] != n_rois:
        raise ValueError(f"connectivity matrices must be square; got shape {pred_fc.shape}")
    if n_rois < 3:
        raise ValueError(f"fc_similarity needs at least 3 ROIs; got R={n_rois}")
    iu = np.triu_indices(n_rois, k=1)
    r = _correlate(pred_fc[..., iu[0], iu[1]], true_fc[..., iu[0], iu[1]], -1, on_constant)
    return float(r) if pred_fc.ndim == 2 else r


def noise_ceiling(
    evoked_truth: np.ndarray, observed: np.ndarray, *, on_constant: OnConstant = "zero"
) -> np.ndarray:
    """The best correlation any model of the evoked response can reach.

    On synthetic data the noise-free evoked signal is known. Its correlation
    with the observed (preprocessed) series bounds what a perfect model of the
    task response can score with :func:`pearson_per_roi`: the rest is noise and
    spontaneous activity that no condition modality can predict.

    Parameters
    ----------
    evoked_truth : ndarray, shape (n_series, T, R)
        The true evoked signal per subject (any units).
    observed : ndarray, shape (n_series, T, R)
        The observed series the model is scored against.
    on_constant : {"zero", "raise"}
        What an ROI with no evoked response (a constant truth) gives.

    Returns
    -------
    ndarray, shape (n_series, R)
        Correlations in [-1, 1]; truth against itself gives 1.
    """
    return pearson_per_roi(evoked_truth, observed, on_constant=on_constant)


def _constant_count(pred: np.ndarray, true: np.ndarray) -> int:
    return int(((np.ptp(pred, axis=1) == 0) | (np.ptp(true, axis=1) == 0)).sum())


def time_series_metrics(
    pred: np.ndarray, true: np.ndarray, *, on_constant: OnConstant = "zero"
) -> dict[str, dict]:
    """All time-series scores of one predictor, ready for ``metrics.json``.

    Parameters
    ----------
    pred, true : ndarray, shape (n_series, T, R)
        Predicted and true ROI time series on the same scale; ``R >= 3``.
    on_constant : {"zero", "raise"}
        Passed to the correlation metrics.

    Returns
    -------
    dict
        ``{"scores": {...}, "per_roi": {...}}`` of plain floats and lists:

        - ``scores["pearson_r"]``, ``scores["r2"]``: means over series and ROIs
          of :func:`pearson_per_roi` and :func:`r2_per_roi`;
        - ``scores["mse"]``: mean squared error over all values;
        - ``scores["fc_similarity"]``: mean of :func:`fc_similarity`;
        - ``scores["n_constant_series"]``: how many (series, ROI) pairs were
          constant in pred or true and so scored r = 0;
        - ``per_roi["pearson_r"]``, ``per_roi["r2"]``, ``per_roi["mse"]``:
          lists of length R, each averaged over series;
        - ``per_series``: ``pearson_r``, ``r2``, ``mse``, ``fc_similarity`` per
          series (length ``n_series``, each averaged over ROIs), whose means are
          the ``scores``.
    """
    pred, true = _check_time_series(pred, true)
    r = pearson_per_roi(pred, true, on_constant=on_constant)
    r2 = r2_per_roi(pred, true, on_constant=on_constant)
    roi_mse = mse(pred, true, axis=(0, 1))
    fc = fc_similarity(pred, true, on_constant=on_constant)
    return {
        "scores": {
            "pearson_r": float(r.mean()),
            "r2": float(r2.mean()),
            "mse": float(roi_mse.mean()),
            "fc_similarity": float(fc.mean()),
            "n_constant_series": _constant_count(pred, true),
        },
        "per_roi": {
            "pearson_r": r.mean(axis=0).tolist(),
            "r2": r2.mean(axis=0).tolist(),
            "mse": roi_mse.tolist(),
        },
        "per_series": {
            "pearson_r": r.mean(axis=1).tolist(),
            "r2": r2.mean(axis=1).tolist(),
            "mse": ((pred - true) ** 2).mean(axis=(1, 2)).tolist(),
            "fc_similarity": np.atleast_1d(fc).tolist(),
        },
    }


def noise_ceiling_metrics(
    evoked_truth: np.ndarray, observed: np.ndarray, *, on_constant: OnConstant = "zero"
) -> dict[str, dict]:
    """The noise ceiling in the ``{"scores", "per_roi"}`` form of :func:`time_series_metrics`.

    Only ``pearson_r`` is reported: the evoked truth and the observed series
    are on different scales, so R² and MSE against it would mean nothing.

    Parameters
    ----------
    evoked_truth, observed : ndarray, shape (n_series, T, R)
        As for :func:`noise_ceiling`.

    Returns
    -------
    dict
        ``{"scores": {"pearson_r": float}, "per_roi": {"pearson_r": [R floats]},
        "per_series": {"pearson_r": [n_series floats]}}``.
    """
    nc = noise_ceiling(evoked_truth, observed, on_constant=on_constant)
    return {
        "scores": {"pearson_r": float(nc.mean())},
        "per_roi": {"pearson_r": nc.mean(axis=0).tolist()},
        "per_series": {"pearson_r": nc.mean(axis=1).tolist()},
    }
