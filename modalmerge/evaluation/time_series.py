"""Scoring a time-series target per held-out subject on whole runs.

Predictions, targets and baselines come as sliding windows; each subject's run
is rebuilt from them (overlaps averaged, :func:`~modalmerge.evaluation.scoring.stitch`)
and scored by :func:`modalmerge.evaluation.metrics.time_series_metrics`.

Synthetic data add (from a :data:`TruthLoader`, see
:func:`modalmerge.stages.evaluate.load_truth`):

- ``oracle`` — a predictor whose output for each test window is the subject's
  *processed noise-free run* (the generator's run with every random term off,
  sent through the same preprocess and parcellate code and settings as the
  observed run) at that window's volumes, scored like every predictor;
- ``noise_ceiling`` — per subject, the Pearson r (per ROI, averaged) between
  the processed noise-free run at the scored volumes and the observed
  processed run: the correlation the subject's own expected signal reaches.
  No predictor built from anything but the subject's noise can expect more
  (docs/architecture.md, "The noise ceiling"). It equals ``oracle``'s r by
  construction of the same windows, computed here on a separate path;
- ``regional_truth`` — the old, looser reference: the regional evoked truth
  (percent, before partial volumes and filtering) against the observed series.
  Not an upper bound; kept, labelled, for comparison.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from modalmerge.evaluation import metrics, time_series_stream
from modalmerge.evaluation.baselines import GroupMeanBaseline
from modalmerge.evaluation.homologs import homolog_attention
from modalmerge.evaluation.identifiability import fc_triangles, identifiability
from modalmerge.evaluation.scoring import (
    Scored,
    ScoringInput,
    fit_ridge,
    stitch,
    subject_rows,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunTruth:
    """One test subject's synthetic truth, on the target ROIs (columns as in the shards).

    Attributes
    ----------
    evoked : ndarray (T, R)
        Regional evoked truth, percent, every volume of the run.
    noisefree : ndarray (T_kept, R) or None
        The processed noise-free run: the parcellated series of the noise-free
        run after the same preprocess and parcellate steps as the observed run.
    volume_index : ndarray (T_kept,) or None
        The original volume of each row of ``noisefree`` (censoring drops rows).
    """

    evoked: np.ndarray
    noisefree: np.ndarray | None = None
    volume_index: np.ndarray | None = None


#: ``(test subjects) -> {subject: RunTruth}``, or None when there is no truth
TruthLoader = Callable[[list[str]], "dict[str, RunTruth] | None"]


def score_time_series(
    data: ScoringInput,
    *,
    by_time: bool = False,
    truth: TruthLoader | None = None,
    roi_views: tuple[list[str], list[str]] | None = None,
    time_units: int = 1,
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
        Loads each test subject's :class:`RunTruth`; when it gives one, the
        ``regional_truth`` correlation is reported, and with a processed
        noise-free run the ``oracle`` predictor and the ``noise_ceiling``.
    roi_views : (target ROI names, condition ROI names), optional
        With ``data.test.attention``, scores where attention peaks against homologs
        (:func:`modalmerge.evaluation.homologs.homolog_attention`).
    time_units : int
        With ``by_time``: each subject's test block is cut into this many
        contiguous, equally long units (``<subject>:test-NN``; the last
        ``T mod time_units`` volumes are left out), each scored as one held-out
        unit, so intervals have ``n = subjects x time_units``. 1: the whole block
        is one unit (``<subject>:test``).
    """
    truths = None if truth is None else truth(sorted(set(data.test.subjects)))
    runs = _runs(data, by_time, truths)
    subjects = sorted(runs["model"])
    names = [n for n in ("model", "group_mean", "ridge", "ridge_parcel", "oracle") if n in runs]
    scores, per_roi, per_unit = {}, {}, {}
    whole = {name: np.stack([runs[name][s] for s in subjects]) for name in (*names, "target")}
    whole_index = runs["time_index"][subjects[0]]
    if by_time and time_units > 1:
        runs, unit_subject = time_units_of(runs, subjects, time_units)
        truths = None if truths is None else {u: truths[s] for u, s in unit_subject.items()}
        units = list(unit_subject)
    else:  # a unit is a test subject, or with split_by: time a subject's test block
        units = [f"{s}:test" if by_time else s for s in subjects]
        runs = {k: dict(zip(units, (v[s] for s in subjects), strict=True)) for k, v in runs.items()}
        truths = (
            None if truths is None else {u: truths[s] for u, s in zip(units, subjects, strict=True)}
        )
    true = np.stack([runs["target"][u] for u in units])
    predicted = {name: np.stack([runs[name][u] for u in units]) for name in names}
    for name in names:
        result = metrics.time_series_metrics(predicted[name], true)
        scores[name], per_roi[name] = result["scores"], result["per_roi"]
        per_unit[name] = result["per_series"]
    extra = {"split_by": "time" if by_time else "subject", "primary_metric": "pearson_r"}
    if by_time:
        extra["time_units"] = time_units
    if not by_time and len(subjects) >= 2 and true.shape[-1] >= 3:
        chance = _add_identifiability(data, predicted, true, scores, per_unit)
        extra["fc_identifiability_chance"] = chance
    arrays = {}
    if truths is not None:  # (per unit: with time units, its arrays hold the units)
        arrays.update(
            _add_truth(truths, units, runs["time_index"], true, scores, per_roi, per_unit)
        )
    arrays.update(  # whole runs: every scored volume of every test subject
        subjects=np.asarray(subjects),
        prediction=whole["model"],
        target=whole["target"],
        **{name: whole[name] for name in names if name != "model"},
        time_index=whole_index,
    )
    per_unit["units"] = units
    if roi_views is not None and data.test.attention is not None:
        found = homolog_attention(data.test.attention, *roi_views)
        if found is not None:
            scores["model"].update(found[0])
            extra["homolog_attention"] = found[1]
    return Scored(scores=scores, arrays=arrays, per_roi=per_roi, per_unit=per_unit, extra=extra)


def time_units_of(
    runs: dict[str, dict[str, np.ndarray]], subjects: list[str], n_units: int
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """Cut each subject's scored block into ``n_units`` contiguous, equally long units.

    Every entry of ``runs`` (``{name: {subject: (T, R) or (T,)}}``) is cut the
    same way, so predictors stay paired unit by unit. Units are named
    ``<subject>:test-NN``; the last ``T mod n_units`` volumes are left out.

    Returns
    -------
    (runs by unit, {unit: subject})

    Raises
    ------
    ValueError
        A unit would hold fewer than 3 volumes (no correlation on it).
    """
    out: dict[str, dict[str, np.ndarray]] = {name: {} for name in runs}
    owner = {}
    for s in subjects:
        length = len(runs["time_index"][s]) // n_units
        if length < 3:
            raise ValueError(
                f"evaluate.time_units {n_units}: {s}'s test block of "
                f"{len(runs['time_index'][s])} volumes leaves {length} per unit (need 3)"
            )
        for k in range(n_units):
            unit = f"{s}:test-{k:02d}"
            owner[unit] = s
            for name, by_subject in runs.items():
                out[name][unit] = by_subject[s][k * length : (k + 1) * length]
    return out, owner


def _at_volumes(truth: RunTruth, volumes: np.ndarray, subject: str) -> np.ndarray:
    """Rows of the processed noise-free run at the original ``volumes``."""
    rows = np.searchsorted(truth.volume_index, volumes)
    if rows.max() >= len(truth.volume_index) or not np.array_equal(
        truth.volume_index[rows], volumes
    ):
        raise ValueError(f"{subject}: the processed noise-free run lacks scored volumes")
    return truth.noisefree[rows]


def _add_truth(truths, subjects, time_index, true, scores, per_roi, per_unit) -> dict:
    """Add ``regional_truth`` and, with processed noise-free runs, the ``noise_ceiling``
    (and the model's fraction of it) to the score tables; returns the arrays for
    ``predictions.npz`` (``truth_evoked``, ``noise_free``)."""
    arrays = {}
    missing = [s for s in subjects if time_index[s].max() >= len(truths[s].evoked)]
    if missing:
        raise ValueError(f"the evoked truth of {missing} is shorter than the scored run")
    evoked = np.stack([truths[s].evoked[time_index[s]] for s in subjects]).astype(np.float32)
    regional = metrics.noise_ceiling_metrics(evoked, true)
    scores["regional_truth"], per_roi["regional_truth"] = regional["scores"], regional["per_roi"]
    per_unit["regional_truth"] = regional["per_series"]
    arrays["truth_evoked"] = evoked
    if any(truths[s].noisefree is None for s in subjects):
        return arrays
    # the ceiling's own path: the noise-free run read at the scored volumes (not via windows)
    clean = np.stack([_at_volumes(truths[s], time_index[s], s) for s in subjects])
    ceiling = metrics.noise_ceiling_metrics(clean, true)
    scores["noise_ceiling"], per_roi["noise_ceiling"] = ceiling["scores"], ceiling["per_roi"]
    per_unit["noise_ceiling"] = ceiling["per_series"]
    ceiling_r = ceiling["scores"]["pearson_r"]
    if ceiling_r > 0:
        scores["model"]["fraction_of_noise_ceiling"] = scores["model"]["pearson_r"] / ceiling_r
    arrays["noise_free"] = clean.astype(np.float32)
    return arrays


def _oracle_windows(test, truths: dict[str, RunTruth]) -> np.ndarray:
    """The oracle's prediction for each test window: the subject's processed noise-free
    run at the window's volumes, shaped like the targets ``(n, W, R)``."""
    width = test.target.shape[1]
    out = np.empty(test.target.shape, dtype=np.float32)
    for i, (subject, start) in enumerate(zip(test.subjects, test.window_start, strict=True)):
        out[i] = _at_volumes(truths[subject], np.arange(start, start + width), subject)
    return out


def _add_identifiability(data: ScoringInput, predicted: dict, true: np.ndarray, scores, per_unit):
    """Add ``fc_top1``, ``fc_mean_rank`` and ``fc_demeaned_r``
    (:mod:`~modalmerge.evaluation.identifiability`) to every predictor's scores and
    per-unit scores; returns the chance levels."""
    if data.train_stream is not None:
        train_mean = time_series_stream.streamed_train_fc_mean(data)
    else:
        train_rows = subject_rows(data.train.subjects)
        train_fc = [
            fc_triangles(stitch(data.train.target[rows], data.train.window_start[rows])[0][None])[0]
            for rows in train_rows.values()
        ]
        train_mean = np.mean(train_fc, axis=0)
    true_fc = fc_triangles(true)
    for name, series in predicted.items():
        found = identifiability(fc_triangles(series), true_fc, train_mean)
        for metric, values in found.items():
            scores[name][metric] = float(values.mean())
            per_unit[name][metric] = values.tolist()
    return {"fc_top1": 1.0 / len(true), "fc_mean_rank": 0.5, "fc_demeaned_r": 0.0}


def _runs(
    data: ScoringInput, by_time: bool, truths: dict[str, RunTruth] | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """Each test subject's whole run: ``model``, ``target``, ``group_mean``, ``ridge``
    (``oracle`` with processed noise-free runs in ``truths``) and ``time_index``
    (absolute volumes), all cut to a common length when the ridge baseline predicts
    whole runs."""
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
    if truths is not None and all(truths[s].noisefree is not None for s in test_rows):
        oracle = _oracle_windows(test, truths)
        runs["oracle"] = {
            s: stitch(oracle[r], test.window_start[r])[0] for s, r in test_rows.items()
        }

    if data.train_stream is not None:  # the same fit from running sums
        group = time_series_stream.streamed_group_mean(data, by_time)
    elif by_time:  # test volumes lie after every training volume: the mean training window
        group = GroupMeanBaseline("time_series").fit(None, train.target)
    else:  # the training subjects' average at the same absolute volumes
        group = GroupMeanBaseline("time_series").fit(
            None, train.target, time_offsets=train.window_start
        )
    if by_time:
        group_windows = group.predict(len(test.subjects))
    else:
        group_windows = group.predict(len(test.subjects), time_offsets=test.window_start)
    for s, r in test_rows.items():
        runs["group_mean"][s] = stitch(group_windows[r], test.window_start[r])[0]

    if data.condition == "time_series":  # same-time map: condition ROIs at t -> target ROIs at t
        n_cond, n_target = test.condition.shape[-1], test.target.shape[-1]
        if data.train_stream is not None:
            ridge = time_series_stream.streamed_same_time_ridge(data)
        else:
            ridge = fit_ridge(
                train.condition.reshape(-1, n_cond),
                train.target.reshape(-1, n_target),
                data.baselines,
            )
        windows = ridge.predict(test.condition.reshape(-1, n_cond)).reshape(test.target.shape)
        for s, r in test_rows.items():
            runs["ridge"][s] = stitch(windows[r], test.window_start[r])[0]
        return runs
    return _whole_run_ridge(data, runs, test_rows)


def _whole_run_ridge(data: ScoringInput, runs: dict, test_rows: dict) -> dict:
    """A subject-level condition: ridge maps it to one whole run per training subject.

    Returns ``runs`` with ``ridge`` (and ``ridge_parcel`` when the parcel
    features are given) added and every run cut to the shortest length.
    """
    subjects = sorted(test_rows)
    out = dict(runs)
    if data.train_stream is not None:  # the same ridge from accumulated statistics
        out.update(time_series_stream.streamed_whole_run_ridges(data, test_rows))
        return _common_length(out, subjects)
    train = data.train
    train_rows = subject_rows(train.subjects)
    train_keys = sorted(train_rows)
    whole = [
        stitch(train.target[train_rows[k]], train.window_start[train_rows[k]])[0]
        for k in train_keys
    ]
    length = min(len(r) for r in whole)
    y_train = np.stack([r[:length] for r in whole])
    for name, (x_train_rows, x_test_rows) in data.ridge_inputs().items():
        x_train = np.stack([x_train_rows[train_rows[k][0]] for k in train_keys])
        ridge = fit_ridge(x_train, y_train, data.baselines)
        predicted = ridge.predict(np.stack([x_test_rows[test_rows[s][0]] for s in subjects]))
        out[name] = dict(zip(subjects, predicted, strict=True))
    return _common_length(out, subjects)


def _common_length(out: dict, subjects: list[str]) -> dict:
    """Every run of ``out`` cut to the shortest one."""
    length = min(len(v[s]) for k, v in out.items() if k != "time_index" for s in subjects)
    return {k: {s: v[s][:length] for s in subjects} for k, v in out.items()}
