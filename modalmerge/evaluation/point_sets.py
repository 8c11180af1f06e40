"""Scoring a generated point set (the ``set`` decoder) per held-out subject.

The ``set`` decoder generates N points (xyz in mm, then features) with no
correspondence to the subject's true cloud, so the scores compare two SETS, on
the coordinates only (the shape of the surface):

- ``fscore`` (primary, higher is better): the F-score at radius ``tau`` —
  precision = share of generated points within ``tau`` of a true point,
  recall = share of true points within ``tau`` of a generated point, their
  harmonic mean (Tatarchenko et al. 2019's measure for reconstructions);
- ``precision``, ``recall``: its two one-sided parts;
- ``chamfer_mm`` (lower is better): the mean of the two one-sided mean
  nearest-neighbour distances (mm; not squared, so it reads as a distance);
- ``accuracy_mm`` (generated -> true) and ``completeness_mm`` (true ->
  generated): the two one-sided mean distances.

``tau`` is fixed from the training subjects only: the median over their
clouds of each point's distance to its nearest other point of the same cloud
(the clouds' sampling spacing), recorded as ``fscore_radius_mm``.

Baselines (from the training subjects only), each a point set scored the same way:

- ``medoid_template``: the training subject's cloud with the least mean
  Chamfer distance to the other training clouds (the set nearest the group);
- ``fps_template``: a farthest-point sample of all training points pooled, as
  many points as the model generates (the group's surface, evenly covered);
- ``nearest_anatomy``: the cloud of the training subject nearest the test
  subject in the condition's ridge features (standardised, Euclidean).

Windows of one subject: its first window's generated set is scored (the slots
of two sets are not in correspondence, so sets are not averaged).
Numpy and scipy only: a data-side module (no torch).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from modalmerge.evaluation.scoring import Scored, ScoringInput, subject_mean

METRICS = ("fscore", "precision", "recall", "chamfer_mm", "accuracy_mm", "completeness_mm")


def set_scores(pred_xyz: np.ndarray, true_xyz: np.ndarray, tau: float) -> dict[str, float]:
    """The metrics of the module docstring for two point sets ``(N, 3)`` and ``(M, 3)``."""
    to_true = cKDTree(true_xyz).query(pred_xyz)[0]
    to_pred = cKDTree(pred_xyz).query(true_xyz)[0]
    precision, recall = float((to_true <= tau).mean()), float((to_pred <= tau).mean())
    total = precision + recall
    return {
        "fscore": 2 * precision * recall / total if total > 0 else 0.0,
        "precision": precision,
        "recall": recall,
        "chamfer_mm": float(0.5 * (to_true.mean() + to_pred.mean())),
        "accuracy_mm": float(to_true.mean()),
        "completeness_mm": float(to_pred.mean()),
    }


def sampling_spacing(clouds: np.ndarray) -> float:
    """Median over clouds ``(n, M, 3+)`` and points of the distance to the nearest other point."""
    gaps = [cKDTree(c[:, :3]).query(c[:, :3], k=2)[0][:, 1] for c in clouds]
    return float(np.median(np.concatenate(gaps)))


def farthest_point_sample(points: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows of ``points`` ``(P, 3)`` by farthest-point sampling, from the point farthest
    from their mean (deterministic)."""
    n = min(int(n), len(points))
    chosen = [int(np.argmax(((points - points.mean(0)) ** 2).sum(1)))]
    distance = ((points - points[chosen[0]]) ** 2).sum(1)
    for _ in range(n - 1):
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, ((points - points[chosen[-1]]) ** 2).sum(1))
    return points[chosen]


def medoid(clouds: np.ndarray) -> int:
    """Index of the cloud ``(n, M, 3)`` with the least mean Chamfer distance to the others."""
    trees = [cKDTree(c) for c in clouds]
    n = len(clouds)
    cost = np.zeros(n)
    for a in range(n):
        for b in range(a + 1, n):
            d = 0.5 * (trees[b].query(clouds[a])[0].mean() + trees[a].query(clouds[b])[0].mean())
            cost[a] += d
            cost[b] += d
    return int(np.argmin(cost))


def _first_per_subject(values: np.ndarray, subjects: list[str]) -> tuple[list[str], np.ndarray]:
    first: dict[str, int] = {}
    for i, s in enumerate(subjects):
        first.setdefault(s, i)
    keys = sorted(first)
    return keys, np.asarray(values)[[first[s] for s in keys]]


def _nearest_anatomy(data: ScoringInput, train_keys: list[str], test_keys: list[str]):
    """Row of ``train_keys`` nearest each test subject in the condition's ridge features."""
    train_keys_x, x_train = subject_mean(np.asarray(data.x_train, np.float64), data.train.subjects)
    test_keys_x, x_test = subject_mean(np.asarray(data.x_test, np.float64), data.test.subjects)
    x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    mean, std = x_train.mean(0), x_train.std(0)
    std = np.where(std > 0, std, 1.0)
    a, b = (x_train - mean) / std, (x_test - mean) / std
    nearest = ((b[:, None] - a[None]) ** 2).sum(-1).argmin(1)
    row = {s: i for i, s in enumerate(train_keys)}
    by_test = dict(zip(test_keys_x, nearest, strict=True))
    return [row[train_keys_x[by_test[s]]] for s in test_keys]


def score_point_set(data: ScoringInput) -> Scored:
    """Score generated point sets and the three template baselines on each test subject."""
    keys, pred = _first_per_subject(data.test.prediction, data.test.subjects)
    _, true = subject_mean(np.asarray(data.test.target, np.float64), data.test.subjects)
    train_keys, train_clouds = subject_mean(
        np.asarray(data.train.target, np.float64), data.train.subjects
    )
    xyz = train_clouds[..., :3]
    tau = sampling_spacing(xyz)
    n_points = pred.shape[1]
    sets = {
        "model": [p[:, :3] for p in pred],
        "medoid_template": [xyz[medoid(xyz)]] * len(keys),
        "fps_template": [farthest_point_sample(xyz.reshape(-1, 3), n_points)] * len(keys),
        "nearest_anatomy": [xyz[i] for i in _nearest_anatomy(data, train_keys, keys)],
    }
    scores, per_unit = {}, {"units": list(keys)}
    for name, clouds in sets.items():
        rows = [set_scores(c, t[:, :3], tau) for c, t in zip(clouds, true, strict=True)]
        per_unit[name] = {m: [r[m] for r in rows] for m in METRICS}
        scores[name] = {m: float(np.mean(v)) for m, v in per_unit[name].items()}
    arrays = {"subjects": np.asarray(keys), "prediction": pred, "target": true}
    arrays |= {k: np.stack(v) for k, v in sets.items() if k != "model"}
    extra = {"primary_metric": "fscore", "fscore_radius_mm": round(tau, 4)}
    return Scored(scores=scores, arrays=arrays, per_unit=per_unit, extra=extra)


__all__ = ["farthest_point_sample", "medoid", "sampling_spacing", "score_point_set", "set_scores"]
