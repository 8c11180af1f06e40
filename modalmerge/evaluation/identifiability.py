"""Whether predicted connectivity is individual: identifiability among held-out subjects.

A prediction can score a high FC similarity by reproducing the group's
connectivity, which every subject shares (Zalesky et al. 2024, Netw Neurosci
8(4):1291: individual predictions beat the group average by only 8–11 % on
real data). Three scores ask whether it carries the SUBJECT's connectivity,
each per held-out subject (so they get intervals like any other score):

- ``fc_top1``: does subject i's true FC correlate best with subject i's own
  predicted FC among all held-out predictions? 1 or 0; a tie of k predictions
  at the top counts 1/k (so identical predictions for everyone score 1/n,
  chance). Its mean is the fraction identified; chance is 1/n.
- ``fc_mean_rank``: the percentile of the own prediction among all held-out
  predictions, ranked by correlation with subject i's true FC: the fraction of
  the other n - 1 predictions that correlate less (ties count half); 1 =
  perfect, 0.5 = chance (also the score of identical predictions).
- ``fc_demeaned_r``: the Pearson r of predicted and true FC after subtracting
  the TRAINING subjects' mean FC from both: the individual part alone. A
  prediction equal to the training mean FC has nothing left and scores 0 (a
  constant upper triangle correlates 0, the convention of
  :func:`modalmerge.evaluation.metrics.fc_matrix_similarity`; never NaN).

Correlations are Pearson r of upper triangles (diagonal excluded) of
:func:`modalmerge.data.parcellation.connectivity.connectivity`. The scores need
at least 2 held-out subjects and 3 ROIs.
"""

from __future__ import annotations

import numpy as np

from modalmerge.data.parcellation.connectivity import connectivity

#: ties in correlation closer than this count as ties
TIE_TOLERANCE = 1e-12


def fc_triangles(series: np.ndarray) -> np.ndarray:
    """Upper triangles ``(n, R (R - 1) / 2)`` of the FC of each series ``(n, T, R)``."""
    series = np.asarray(series, dtype=np.float64)
    n_rois = series.shape[-1]
    if n_rois < 3:
        raise ValueError(f"identifiability needs at least 3 ROIs; got R={n_rois}")
    iu = np.triu_indices(n_rois, k=1)
    return np.stack([connectivity(s)[iu] for s in series])


def _standardise(rows: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit norm; a constant row becomes zeros (r = 0)."""
    centred = rows - rows.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.divide(centred, norm, out=np.zeros_like(centred), where=norm > 0)


def cross_correlation(true_fc: np.ndarray, pred_fc: np.ndarray) -> np.ndarray:
    """``C[i, j]`` = Pearson r of subject i's true FC with subject j's predicted FC."""
    return np.clip(_standardise(true_fc) @ _standardise(pred_fc).T, -1.0, 1.0)


def identifiability(
    pred_fc: np.ndarray, true_fc: np.ndarray, train_mean_fc: np.ndarray
) -> dict[str, np.ndarray]:
    """Per held-out subject: ``fc_top1``, ``fc_mean_rank`` and ``fc_demeaned_r``.

    Parameters
    ----------
    pred_fc, true_fc : ndarray, shape (n, E)
        Upper triangles of predicted and true FC (:func:`fc_triangles`), one row
        per held-out subject, row i of both the same subject; ``n >= 2``.
    train_mean_fc : ndarray, shape (E,)
        The mean upper triangle of the training subjects' FC.

    Returns
    -------
    dict of str -> ndarray, shape (n,)
        The three scores per subject (see the module docstring).
    """
    pred_fc = np.asarray(pred_fc, dtype=np.float64)
    true_fc = np.asarray(true_fc, dtype=np.float64)
    if pred_fc.shape != true_fc.shape or pred_fc.ndim != 2:
        raise ValueError(f"pred_fc {pred_fc.shape} and true_fc {true_fc.shape} must match (n, E)")
    n = len(pred_fc)
    if n < 2:
        raise ValueError("identifiability needs at least 2 held-out subjects")
    corr = cross_correlation(true_fc, pred_fc)
    own = np.diag(corr)[:, None]
    others = ~np.eye(n, dtype=bool)
    tied = (np.abs(corr - own) <= TIE_TOLERANCE) & others
    below = (corr < own - TIE_TOLERANCE) & others
    rank = (below.sum(axis=1) + 0.5 * tied.sum(axis=1)) / (n - 1)
    top = ~((corr > own + TIE_TOLERANCE) & others).any(axis=1)
    top1 = np.where(top, 1.0 / (1 + tied.sum(axis=1)), 0.0)
    mean = np.asarray(train_mean_fc, dtype=np.float64)[None, :]
    demeaned = (_standardise(pred_fc - mean) * _standardise(true_fc - mean)).sum(axis=1)
    return {
        "fc_top1": top1,
        "fc_mean_rank": rank,
        "fc_demeaned_r": np.clip(demeaned, -1.0, 1.0),
    }
