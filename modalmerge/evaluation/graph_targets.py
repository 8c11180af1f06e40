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
from modalmerge.evaluation.scoring import Scored, subject_mean

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


def score_graph(data, physics: bool = False, coordinates=None) -> Scored:
    """Score a graph target (an FC, or any symmetric matrix) per held-out subject.

    ``data``: the evaluate stage's :class:`~modalmerge.evaluation.scoring.ScoringInput`
    (window samples repeat their subject's graph: each subject's rows are averaged
    first). Predictors: the ``model``; ``group_mean``, the training subjects' mean
    matrix; ``ridge``, ridge on the PCA of the condition's features (a graph
    condition's upper triangle; :func:`ridge_pca` with the evaluate settings'
    penalties and components); with ``physics`` (an SC condition, an FC target),
    the analytic OU FC of the subject's SC with ``g`` fitted on training subjects;
    with ``coordinates`` (the condition graph's node-coordinate columns: local
    sub-graphs of region data), the per-edge ``distance_decay`` and ``ridge_edges``
    (:mod:`modalmerge.evaluation.graph_edges`).
    """
    train, test = data.train, data.test
    keys, true = subject_mean(_matrices(test.target), test.subjects)
    train_keys, train_true = subject_mean(_matrices(train.target), train.subjects)
    model = subject_mean(_matrices(test.prediction), test.subjects)[1]
    predictions = {"model": 0.5 * (model + model.transpose(0, 2, 1))}
    predictions["group_mean"] = group_average(train_true, len(keys))
    x_train = subject_mean(data.x_train, train.subjects)[1]
    x_test = subject_mean(data.x_test, test.subjects)[1]
    predictions["ridge"] = _ridge(x_train, train_true, x_test, data.baselines)
    extra: dict = {"primary_metric": "edge_r"}
    if physics:
        sc_train = subject_mean(_matrices(train.condition), train.subjects)[1]
        sc_test = subject_mean(_matrices(test.condition), test.subjects)[1]
        g = fit_physics_g(sc_train, train_true)
        predictions["physics"] = physics_fc(sc_test, g)
        extra["physics_g"] = g
    if coordinates is not None and data.condition == "graph":
        from modalmerge.evaluation.graph_edges import edge_baselines

        cond_train = subject_mean(np.asarray(train.condition, np.float64), train.subjects)[1]
        cond_test = subject_mean(np.asarray(test.condition, np.float64), test.subjects)[1]
        edges = edge_baselines(
            cond_train, triangles(train_true), cond_test, coordinates, data.baselines.alphas
        )
        n_nodes = true.shape[-1]
        for name, values in edges.items():
            predictions[name] = edges_to_matrices(values, n_nodes)
    mean = train_true.mean(0)
    per_unit: dict = {"units": list(keys)}
    scores: dict = {}
    for name, p in predictions.items():
        own = graph_scores(p, true, mean)
        per_unit[name] = {k: v.tolist() for k, v in own.items()}
        scores[name] = {k: float(np.mean(v)) for k, v in own.items()}
    arrays = {"subjects": np.asarray(keys), "prediction": predictions["model"], "target": true}
    arrays.update({k: v for k, v in predictions.items() if k != "model"})
    if data.condition == "graph":  # drawn beside the target (figures stage)
        arrays["condition"] = subject_mean(_matrices(test.condition), test.subjects)[1]
    extra["n_train_subjects"] = len(train_keys)
    return Scored(scores=scores, arrays=arrays, per_unit=per_unit, extra=extra)


def _matrices(x: np.ndarray) -> np.ndarray:
    """The adjacency part ``(n, N, N)`` of packed graphs ``(n, N, F + N)``."""
    x = np.asarray(x, dtype=np.float64)
    return x[..., x.shape[-1] - x.shape[-2] :]


def _ridge(x_train, y_train, x_test, settings) -> np.ndarray:
    """:func:`ridge_pca` on any features (graphs: their upper triangles)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def features(x):
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 3 and x.shape[-1] >= x.shape[-2]:
            return triangles(_matrices(x))
        return x.reshape(len(x), -1)

    x_train, x_test = features(x_train), features(x_test)
    k = max(1, min(int(settings.n_components), len(x_train) - 1, x_train.shape[1]))
    model = make_pipeline(
        StandardScaler(), PCA(k, random_state=0), RidgeCV(alphas=tuple(settings.alphas))
    )
    model.fit(x_train, triangles(y_train))
    return edges_to_matrices(model.predict(x_test), y_train.shape[1])
