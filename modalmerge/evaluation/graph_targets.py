"""Scores and baselines for graph targets: a subject's FC predicted from its SC (or anything).

Scores, per held-out subject (each then gets a bootstrap interval and paired
differences, :mod:`modalmerge.evaluation.intervals`): ``edge_r`` (Pearson r of the
predicted and true upper triangles, diagonal excluded), ``edge_mse``, and the
identifiability scores ``fc_top1``, ``fc_mean_rank``, ``fc_demeaned_r``
(:mod:`modalmerge.evaluation.identifiability`).

Baselines (each fitted on the training subjects only):

- ``group_average``: the training subjects' mean FC, the same for everyone;
- ``physics``: the analytic FC of the generating model's family, the stationary
  correlation of the Ornstein-Uhlenbeck process ``A = -I + g SC`` of the subject's
  own SC (:func:`modalmerge.data.synthetic.connectome.lyapunov_fc`), with one
  global coupling ``g`` chosen on a grid to minimise the training subjects' edge
  MSE (it cannot know a subject's own ``g``);
- ``ridge_pca``: ridge regression of the FC edges on the leading principal
  components of the SC edges (scikit-learn ``PCA`` + ``RidgeCV``; the number of
  components is ``min(n_components, n_train - 1)``, the penalty chosen by
  efficient leave-one-out on the training subjects).

Numpy, scipy and scikit-learn only: a data-side module (no torch).
"""

from __future__ import annotations

import numpy as np

from modalmerge.data.synthetic.connectome import lyapunov_fc
from modalmerge.evaluation.identifiability import identifiability

#: global couplings the physics baseline tries (SC normalised to spectral radius 1)
G_GRID = tuple(np.round(np.arange(0.05, 0.96, 0.05), 2))
RIDGE_ALPHAS = tuple(10.0 ** np.arange(-3, 4))


def triangles(matrices: np.ndarray) -> np.ndarray:
    """Upper triangles ``(n, R (R - 1) / 2)`` of matrices ``(n, R, R)``, diagonal excluded."""
    matrices = np.asarray(matrices, dtype=np.float64)
    if matrices.ndim != 3 or matrices.shape[1] != matrices.shape[2] or matrices.shape[1] < 3:
        raise ValueError(f"expected square matrices (n, R, R) with R >= 3, got {matrices.shape}")
    i, j = np.triu_indices(matrices.shape[1], 1)
    return matrices[:, i, j]


def _rowwise_r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    denominator = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denominator > 0, (a * b).sum(1) / denominator, 0.0)
    return np.clip(r, -1.0, 1.0)


def graph_scores(
    pred_fc: np.ndarray, true_fc: np.ndarray, train_mean_fc: np.ndarray
) -> dict[str, np.ndarray]:
    """Per held-out subject: ``edge_r``, ``edge_mse`` and the identifiability scores.

    ``pred_fc``, ``true_fc``: matrices ``(n, R, R)``, row i the same subject;
    ``train_mean_fc``: ``(R, R)``, the training subjects' mean FC.
    """
    pred, true = triangles(pred_fc), triangles(true_fc)
    if pred.shape != true.shape:
        raise ValueError(f"predicted FC {pred.shape} and true FC {true.shape} differ in shape")
    scores = {"edge_r": _rowwise_r(pred, true), "edge_mse": ((pred - true) ** 2).mean(1)}
    scores.update(identifiability(pred, true, triangles(train_mean_fc[None])[0]))
    return scores


def group_average(train_fc: np.ndarray, n_test: int) -> np.ndarray:
    """The training subjects' mean FC, repeated for ``n_test`` subjects."""
    mean = np.asarray(train_fc, dtype=np.float64).mean(0)
    return np.repeat(mean[None], n_test, axis=0)


def fit_physics_g(train_sc: np.ndarray, train_fc: np.ndarray, grid=G_GRID) -> float:
    """The global coupling ``g`` of :func:`lyapunov_fc` with the least training edge MSE."""
    true = triangles(train_fc)
    losses = [((triangles(physics_fc(train_sc, g)) - true) ** 2).mean() for g in grid]
    return float(grid[int(np.argmin(losses))])


def physics_fc(sc: np.ndarray, g: float) -> np.ndarray:
    """The analytic OU FC ``(n, R, R)`` of each SC ``(n, R, R)`` at coupling ``g``."""
    return np.stack([lyapunov_fc(np.asarray(s, dtype=np.float64), g) for s in sc])


def ridge_pca(
    train_sc: np.ndarray,
    train_fc: np.ndarray,
    test_sc: np.ndarray,
    n_components: int = 20,
    alphas=RIDGE_ALPHAS,
) -> np.ndarray:
    """FC ``(n_test, R, R)`` from ridge regression on the PCA of the SC edges."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_test, y_train = triangles(train_sc), triangles(test_sc), triangles(train_fc)
    k = max(1, min(int(n_components), len(x_train) - 1, x_train.shape[1]))
    model = make_pipeline(StandardScaler(), PCA(k, random_state=0), RidgeCV(alphas=alphas))
    model.fit(x_train, y_train)
    return edges_to_matrices(model.predict(x_test), train_fc.shape[1])


def edges_to_matrices(edges: np.ndarray, n: int, diagonal: float = 1.0) -> np.ndarray:
    """Symmetric matrices ``(m, n, n)`` from upper triangles ``(m, E)``, ``diagonal`` on it."""
    i, j = np.triu_indices(n, 1)
    out = np.full((len(edges), n, n), diagonal, dtype=np.float64)
    out[:, i, j] = edges
    out[:, j, i] = edges
    return out


def baseline_predictions(
    train_sc: np.ndarray, train_fc: np.ndarray, test_sc: np.ndarray
) -> tuple[dict[str, np.ndarray], float]:
    """Every baseline's FC ``(n_test, R, R)`` by name, and the physics baseline's fitted ``g``."""
    g = fit_physics_g(train_sc, train_fc)
    return {
        "group_average": group_average(train_fc, len(test_sc)),
        "physics": physics_fc(test_sc, g),
        "ridge_pca": ridge_pca(train_sc, train_fc, test_sc),
    }, g
