"""The time-series scorer's baselines when the training split comes as a stream
(``ScoringInput.train_stream``, :mod:`modalmerge.evaluation.streaming`): the same
predictors as :func:`modalmerge.evaluation.time_series.score_time_series` fits in memory,
with memory that does not grow with the training subjects."""

from __future__ import annotations

import numpy as np

from modalmerge.evaluation.baselines import GroupMeanBaseline
from modalmerge.evaluation.identifiability import fc_triangles
from modalmerge.evaluation.scoring import ScoringInput, stitch
from modalmerge.evaluation.streaming import StreamingRidge, running_group_mean


def streamed_group_mean(data: ScoringInput, by_time: bool) -> GroupMeanBaseline:
    """The group-mean baseline of the streamed training windows."""
    return running_group_mean(data.train_stream, by_time)


def _ridge(data: ScoringInput, rows) -> StreamingRidge:
    settings = data.baselines
    return StreamingRidge(settings.alphas, n_components=settings.n_components).fit(rows)


def streamed_same_time_ridge(data: ScoringInput) -> StreamingRidge:
    """Ridge from the condition ROIs at each volume to the target ROIs at the same volume
    (a time-series condition), over every volume of every training window."""
    n_cond, n_target = data.test.condition.shape[-1], data.test.target.shape[-1]

    def rows():
        for part in data.train_stream():
            yield part.condition.reshape(-1, n_cond), part.target.reshape(-1, n_target)

    return _ridge(data, rows)


def streamed_whole_run_ridges(data: ScoringInput, test_rows: dict) -> dict[str, dict]:
    """``{"ridge": {subject: run}, "ridge_parcel": ...}``: ridge from each training subject's
    condition features (and parcel features, when every training and test subject has them)
    to its whole run (cut to the shortest training run), predicted for each test subject."""
    length, parcels = None, True
    for part in data.train_stream():  # the shortest run, and whether parcel features exist
        n = len(stitch(part.target, part.window_start)[0])
        length = n if length is None else min(length, n)
        parcels = parcels and part.parcel is not None
    if length is None:
        raise ValueError("the training split has no samples")
    subjects = sorted(test_rows)
    first = [test_rows[s][0] for s in subjects]
    inputs = {"ridge": (lambda part: part.features[:1], data.x_test[first])}
    if parcels and data.parcel_test is not None:
        inputs["ridge_parcel"] = (lambda part: part.parcel[None], data.parcel_test[first])
    out = {}
    for name, (features, x_test) in inputs.items():

        def rows(features=features):
            for part in data.train_stream():
                run = stitch(part.target, part.window_start)[0][:length]
                yield features(part), run.reshape(1, -1)

        ridge = _ridge(data, rows)
        predicted = ridge.predict(x_test).reshape(len(subjects), length, -1)
        out[name] = dict(zip(subjects, predicted, strict=True))
    return out


def streamed_train_fc_mean(data: ScoringInput) -> np.ndarray:
    """The training subjects' mean FC triangle (their whole runs), summed in stream order."""
    total, n = None, 0
    for part in data.train_stream():
        fc = fc_triangles(stitch(part.target, part.window_start)[0][None])[0]
        total = fc.astype(np.float64) if total is None else total + fc
        n += 1
    if total is None:
        raise ValueError("the training split has no samples")
    return total / n
