"""Scoring a time-series target per held-out subject on whole runs.

Predictions, targets and baselines come as sliding windows; each subject's run
is rebuilt from them (overlaps averaged, :func:`~modalmerge.evaluation.scoring.stitch`)
and scored by :func:`modalmerge.evaluation.metrics.time_series_metrics`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from modalmerge.evaluation import metrics
from modalmerge.evaluation.baselines import GroupMeanBaseline
from modalmerge.evaluation.homologs import homolog_attention
from modalmerge.evaluation.scoring import (
    Scored,
    ScoringInput,
    fit_ridge,
    stitch,
    subject_rows,
)

log = logging.getLogger(__name__)

#: ``(subjects, {subject: time index}) -> (n_subjects, T, R) noise-free evoked series or None``
TruthLoader = Callable[[list[str], dict[str, np.ndarray]], "np.ndarray | None"]


def score_time_series(
    data: ScoringInput,
    *,
    by_time: bool = False,
    truth: TruthLoader | None = None,
    roi_views: tuple[list[str], list[str]] | None = None,
) -> Scored:
    """Score the model, the group mean and ridge on each test subject's whole run.

    Parameters
    ----------
    data : ScoringInput
        Windows ``(n, W, R)`` as targets and predictions; ``window_start`` per sample.
    by_time : bool
        Splits are blocks of the same runs (``shard.split_by: time``): the group
        mean is the mean training window, not the training average at the same volumes.
    truth : callable, optional
        Loads the noise-free evoked series at the scored volumes; when it gives
        one, the noise ceiling is reported.
    roi_views : (target ROI names, condition ROI names), optional
        With ``data.test.attention``, scores where attention peaks against homologs
        (:func:`modalmerge.evaluation.homologs.homolog_attention`).
    """
    runs = _runs(data, by_time)
    subjects = sorted(runs["model"])
    scores, per_roi = {}, {}
    true = np.stack([runs["target"][s] for s in subjects])
    for name in ("model", "group_mean", "ridge"):
        predicted = np.stack([runs[name][s] for s in subjects])
        result = metrics.time_series_metrics(predicted, true)
        scores[name], per_roi[name] = result["scores"], result["per_roi"]
    arrays = {}
    evoked = None if truth is None else truth(subjects, runs["time_index"])
    if evoked is not None:
        ceiling = metrics.noise_ceiling_metrics(evoked, true)
        scores["noise_ceiling"], per_roi["noise_ceiling"] = ceiling["scores"], ceiling["per_roi"]
        ceiling_r = ceiling["scores"]["pearson_r"]
        if ceiling_r > 0:
            scores["model"]["fraction_of_noise_ceiling"] = scores["model"]["pearson_r"] / ceiling_r
        arrays["truth_evoked"] = evoked
    arrays.update(
        subjects=np.asarray(subjects),
        prediction=np.stack([runs["model"][s] for s in subjects]),
        target=true,
        group_mean=np.stack([runs["group_mean"][s] for s in subjects]),
        ridge=np.stack([runs["ridge"][s] for s in subjects]),
        time_index=runs["time_index"][subjects[0]],
    )
    extra = {"split_by": "time" if by_time else "subject"}
    if roi_views is not None and data.test.attention is not None:
        found = homolog_attention(data.test.attention, *roi_views)
        if found is not None:
            scores["model"].update(found[0])
            extra["homolog_attention"] = found[1]
    return Scored(scores=scores, arrays=arrays, per_roi=per_roi, extra=extra)


def _runs(data: ScoringInput, by_time: bool) -> dict[str, dict[str, np.ndarray]]:
    """Each test subject's whole run: ``model``, ``target``, ``group_mean``, ``ridge``
    and ``time_index`` (absolute volumes), all cut to a common length when the ridge
    baseline predicts whole runs."""
    train, test = data.train, data.test
    test_rows = subject_rows(test.subjects)
    runs: dict[str, dict[str, np.ndarray]] = {
        k: {} for k in ("model", "target", "time_index", "group_mean", "ridge")
    }
    for s, rows in test_rows.items():
        runs["model"][s], runs["time_index"][s] = stitch(
            test.prediction[rows], test.window_start[rows]
        )
        runs["target"][s], _ = stitch(test.target[rows], test.window_start[rows])

    if by_time:  # test volumes lie after every training volume: the mean training window
        group = GroupMeanBaseline("time_series").fit(None, train.target)
        group_windows = group.predict(len(test.subjects))
    else:  # the training subjects' average at the same absolute volumes
        group = GroupMeanBaseline("time_series").fit(
            None, train.target, time_offsets=train.window_start
        )
        group_windows = group.predict(len(test.subjects), time_offsets=test.window_start)
    for s, r in test_rows.items():
        runs["group_mean"][s] = stitch(group_windows[r], test.window_start[r])[0]

    if data.condition == "time_series":  # same-time map: condition ROIs at t -> target ROIs at t
        n_cond, n_target = train.condition.shape[-1], train.target.shape[-1]
        ridge = fit_ridge(
            train.condition.reshape(-1, n_cond), train.target.reshape(-1, n_target), data.baselines
        )
        windows = ridge.predict(test.condition.reshape(-1, n_cond)).reshape(test.target.shape)
        for s, r in test_rows.items():
            runs["ridge"][s] = stitch(windows[r], test.window_start[r])[0]
        return runs
    return _whole_run_ridge(data, runs, test_rows)


def _whole_run_ridge(data: ScoringInput, runs: dict, test_rows: dict) -> dict:
    """A subject-level condition: ridge maps it to one whole run per training subject.

    Returns ``runs`` with ``ridge`` added and every run cut to the shortest length.
    """
    train = data.train
    train_rows = subject_rows(train.subjects)
    train_keys = sorted(train_rows)
    whole = [
        stitch(train.target[train_rows[k]], train.window_start[train_rows[k]])[0]
        for k in train_keys
    ]
    length = min(len(r) for r in whole)
    y_train = np.stack([r[:length] for r in whole])
    x_train = np.stack([data.x_train[train_rows[k][0]] for k in train_keys])
    ridge = fit_ridge(x_train, y_train, data.baselines)
    subjects = sorted(test_rows)
    predicted = ridge.predict(np.stack([data.x_test[test_rows[s][0]] for s in subjects]))
    ridge_runs = {}
    for s, run in zip(subjects, predicted, strict=True):
        ridge_runs[s] = run[: min(len(run), len(runs["target"][s]))]
    out = {**runs, "ridge": ridge_runs}
    length = min(
        min(len(v) for v in ridge_runs.values()), min(len(v) for v in runs["target"].values())
    )
    return {k: {s: v[s][:length] for s in subjects} for k, v in out.items()}
