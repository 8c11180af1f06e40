"""Edge-level baselines for graph -> graph tasks whose nodes have positions.

For the local sub-graphs of region data (:mod:`modalmerge.data.shards.subgraphs`)
the nodes differ from one sample to the next, so a baseline that averages the
training graphs entry by entry (``group_mean``) or regresses whole graphs
(``ridge``) compares unlike edges. Two fair baselines work per EDGE instead,
fitted on every edge of every training sample:

- ``distance_decay``: the mean training FC as a function of the distance between
  the two nodes' centroids — the training edges' FC averaged in distance bins
  (quantiles of the training distances), read off by linear interpolation between
  the bins' median distances (flat beyond them);
- ``ridge_edges``: ridge regression (scikit-learn ``RidgeCV``, standardised
  inputs) of an edge's FC on what a linear model of that edge can see: the
  condition's edge value (MPC), the distance, its log and square, and for every
  node feature the product, sum and absolute difference of the two nodes' values.

Distances come from the condition's node features: the columns ``coordinates``
(centroids in a common scale; the sub-graph shards' ``coordinate_columns``).
Numpy and scikit-learn only: a data-side module (no torch).
"""

from __future__ import annotations

import numpy as np

N_BINS = 20
RIDGE_ALPHAS = tuple(10.0 ** np.arange(-3, 5))


def _split(graphs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Node features ``(n, N, F)`` and adjacency ``(n, N, N)`` of packed graphs ``(n, N, F + N)``."""
    graphs = np.asarray(graphs, dtype=np.float64)
    n_nodes = graphs.shape[-2]
    return graphs[..., : graphs.shape[-1] - n_nodes], graphs[..., graphs.shape[-1] - n_nodes :]


def edge_distances(graphs: np.ndarray, coordinates) -> np.ndarray:
    """``(n, E)`` distances between the nodes of each upper-triangle edge."""
    features, adjacency = _split(graphs)
    xyz = features[..., list(coordinates)]
    i, j = np.triu_indices(adjacency.shape[-1], 1)
    return np.linalg.norm(xyz[:, i] - xyz[:, j], axis=-1)


def edge_features(graphs: np.ndarray, coordinates) -> np.ndarray:
    """``(n * E, P)`` per-edge inputs of ``ridge_edges`` (see the module docstring)."""
    features, adjacency = _split(graphs)
    i, j = np.triu_indices(adjacency.shape[-1], 1)
    distance = edge_distances(graphs, coordinates)
    own = [c for c in range(features.shape[-1]) if c not in set(coordinates)]
    a, b = features[:, i][..., own], features[:, j][..., own]
    columns = [
        adjacency[:, i, j][..., None],
        distance[..., None],
        np.log(distance + 1e-6)[..., None],
        (distance**2)[..., None],
        a * b,
        a + b,
        np.abs(a - b),
    ]
    stacked = np.concatenate(columns, axis=-1)
    return stacked.reshape(-1, stacked.shape[-1])


def distance_decay(
    train_distance: np.ndarray, train_edges: np.ndarray, test_distance: np.ndarray, n_bins=N_BINS
) -> np.ndarray:
    """``test_distance``'s shape of FC values: binned training means, interpolated."""
    d, y = np.ravel(train_distance), np.ravel(train_edges)
    edges = np.unique(np.quantile(d, np.linspace(0.0, 1.0, n_bins + 1)))
    if len(edges) < 2:
        return np.full(np.shape(test_distance), float(y.mean()))
    which = np.clip(np.searchsorted(edges, d, side="right") - 1, 0, len(edges) - 2)
    filled = [b for b in range(len(edges) - 1) if (which == b).any()]
    centres = np.array([np.median(d[which == b]) for b in filled])
    means = np.array([y[which == b].mean() for b in filled])
    return np.interp(test_distance, centres, means)


def ridge_edges(
    train_graphs: np.ndarray,
    train_edges: np.ndarray,
    test_graphs: np.ndarray,
    coordinates,
    alphas=RIDGE_ALPHAS,
) -> np.ndarray:
    """``(n_test, E)`` FC edges from ridge on :func:`edge_features` of the test graphs."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), RidgeCV(alphas=tuple(alphas)))
    model.fit(edge_features(train_graphs, coordinates), np.ravel(train_edges))
    prediction = model.predict(edge_features(test_graphs, coordinates))
    return prediction.reshape(len(test_graphs), -1)


def edge_baselines(
    train_condition: np.ndarray,
    train_edges: np.ndarray,
    test_condition: np.ndarray,
    coordinates,
    alphas=RIDGE_ALPHAS,
) -> dict[str, np.ndarray]:
    """``{"distance_decay": (n_test, E), "ridge_edges": (n_test, E)}`` upper-triangle edges.

    ``train_condition`` / ``test_condition``: packed condition graphs ``(n, N, F + N)``
    whose ``coordinates`` columns place the nodes; ``train_edges``: the training
    targets' upper triangles ``(n_train, E)``.
    """
    if len(list(coordinates)) == 0:
        raise ValueError("edge baselines need the node coordinate columns")
    return {
        "distance_decay": distance_decay(
            edge_distances(train_condition, coordinates),
            train_edges,
            edge_distances(test_condition, coordinates),
        ),
        "ridge_edges": ridge_edges(
            train_condition, train_edges, test_condition, coordinates, alphas
        ),
    }
