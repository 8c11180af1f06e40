"""Scoring a point-cloud target per held-out subject: features predicted at given points.

The ``values`` decoder predicts each target point's features at its (given) coordinates,
so the prediction and the truth are paired point by point. Per test subject (windows of
one subject share its cloud; their predictions are averaged):

- ``feature_r`` (primary): Pearson r between predicted and true values over the points,
  per feature, averaged over features (a constant prediction scores 0);
- ``feature_mse``: mean squared error over points and features (z-scored units).

Baseline ``group_mean``: the training subjects' surface map — for each test point, each
training subject's features at its nearest point (mm), averaged over the training
subjects. The points of two subjects are not in correspondence, so nearest points stand
in for it. A generated set (the ``set`` decoder) has no paired points: it is scored as a
set (:mod:`modalmerge.evaluation.point_sets`: F-score at a radius, Chamfer distance).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from modalmerge.evaluation.scoring import Scored, ScoringInput, subject_mean


def feature_r(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean over features of the Pearson r over points of ``(N, F)`` arrays (0 when flat)."""
    p = pred - pred.mean(axis=0)
    t = true - true.mean(axis=0)
    denominator = np.sqrt((p**2).sum(axis=0) * (t**2).sum(axis=0))
    r = np.divide((p * t).sum(axis=0), denominator, out=np.zeros(p.shape[1]), where=denominator > 0)
    return float(r.mean())


def nearest_point_mean(train_clouds: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Features ``(N, F)`` at ``xyz`` ``(N, 3)``: each training cloud's value at its nearest
    point, averaged over the training clouds ``(n, M, 3 + F)``."""
    total = np.zeros((len(xyz), train_clouds.shape[-1] - 3))
    for cloud in train_clouds:
        total += cloud[cKDTree(cloud[:, :3]).query(xyz)[1], 3:]
    return total / len(train_clouds)


def score_point_cloud(data: ScoringInput) -> Scored:
    """Score the model and the training subjects' surface map on each test subject's cloud."""
    train, test = data.train, data.test
    keys, pred = subject_mean(test.prediction, test.subjects)
    _, true = subject_mean(test.target, test.subjects)
    if pred.shape != true.shape or not np.allclose(pred[..., :3], true[..., :3]):
        from modalmerge.evaluation.point_sets import score_point_set

        return score_point_set(data)  # a generated set ('set' decoder): no paired points
    _, train_clouds = subject_mean(train.target, train.subjects)
    group = np.stack([nearest_point_mean(train_clouds, cloud[:, :3]) for cloud in true])
    predictions = {"model": pred[..., 3:], "group_mean": group}
    truth = true[..., 3:]
    scores, per_unit = {}, {"units": list(keys)}
    for name, values in predictions.items():
        unit = {
            "feature_r": [feature_r(p, t) for p, t in zip(values, truth, strict=True)],
            "feature_mse": [
                float(((p - t) ** 2).mean()) for p, t in zip(values, truth, strict=True)
            ],
        }
        scores[name] = {metric: float(np.mean(v)) for metric, v in unit.items()}
        per_unit[name] = unit
    arrays = {"subjects": np.asarray(keys), "prediction": pred, "target": true, "group_mean": group}
    return Scored(
        scores=scores, arrays=arrays, per_unit=per_unit, extra={"primary_metric": "feature_r"}
    )


__all__ = ["feature_r", "nearest_point_mean", "score_point_cloud"]
