"""Scoring a ``volume_series`` target (windows of BOLD volumes ``(T, D, H, W)``) per
held-out subject.

Metrics, per window, over the in-brain voxels:

- ``pearson_r``: the voxel-wise Pearson correlation over the window's T volumes between
  the predicted and the true series, averaged over the in-brain voxels (a voxel whose
  predicted or true series is constant in the window counts as r = 0: it explains none
  of the fluctuation);
- ``mse``: the mean squared error over the in-brain voxels and the T volumes.

A subject's score is the mean over its held-out windows; ``scores`` are the means over
subjects, and ``per_unit`` holds one value per subject, from which ``summarize`` draws
intervals and the paired differences model − group_mean
(:mod:`modalmerge.evaluation.intervals`).

The in-brain voxels are those whose value varies across the training windows (the
cleaned BOLD is zero, or constant, outside the brain mask), so they come from the
training subjects only. The baseline ``group_mean`` is the training subjects' mean
window at the same window start (every training window's mean when no training window
starts there), as for time series with a generative model. A ridge from the condition
is not fitted: its targets would be every voxel of every volume.

Realism, for every predictor (the model's predictions and the group mean): ratios
predictor / truth, per held-out subject, of three statistics of a window's in-brain voxels
(:func:`volume_realism_statistics`), each a mean over voxels (or voxel pairs) then windows:
``lag1_autocorrelation`` (over the window's volumes), ``inter_voxel_correlation`` (the mean
off-diagonal correlation of the voxels' series) and ``temporal_sd`` (each voxel's SD over
the window's volumes): ``realism_ratio_<statistic>``, with its parts per subject
(``realism_<statistic>``, ``realism_truth_<statistic>``); the score over subjects is the
ratio of the parts' means, as for ROI time series
(:func:`modalmerge.evaluation.generative.unit_scores`). A conditional-mean prediction is
smoother than the truth (its temporal SD ratio is below 1).

For a generative model (``method: diffusion``) the prediction is the ensemble mean of
its S samples per window (:mod:`modalmerge.stages.evaluate_samples`), and
:func:`add_volume_sample_scores` adds, per held-out subject (the time-series contract of
:mod:`modalmerge.evaluation.generative`, whose estimators it calls): ``crps`` (the fair
ensemble CRPS per in-brain voxel and volume, averaged), ``crps_climatology`` (the same of
the training subjects' windows at the same window start, also the ``climatology``
predictor, so ``summary.csv`` has the paired ``model-climatology`` CRPS difference: lower
is better), ``spread_skill`` (≈ 1 when calibrated), ``realism_ratio_<statistic>`` of the
samples (then the ensemble mean's as ``ensemble_mean_realism_ratio_<statistic>``) and
``sample_diversity`` (the mean over windows of the voxel-wise SD across samples, averaged
over in-brain voxels and volumes: 0 when every sample is the same window).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from modalmerge.evaluation.generative import (
    _ratio,
    climatology_members,
    crps_ensemble,
    spread_skill,
    unit_scores,
)
from modalmerge.evaluation.intervals import paired_difference
from modalmerge.evaluation.scoring import Scored, ScoringInput

#: windows whose prediction, truth and group mean are kept in predictions.npz
KEPT_WINDOWS = 4
#: realism statistics of a window of volumes (:func:`volume_realism_statistics`)
VOLUME_REALISM = ("lag1_autocorrelation", "inter_voxel_correlation", "temporal_sd")


def brain_mask(train_target: np.ndarray) -> np.ndarray:
    """In-brain voxels ``(D, H, W)`` bool: those varying across the training windows
    ``(n, T, D, H, W)``."""
    train_target = np.asarray(train_target)
    if train_target.ndim != 5:
        raise ValueError(
            f"volume_series targets are (n, T, D, H, W) windows; got shape {train_target.shape}"
        )
    flat = train_target.reshape(-1, *train_target.shape[2:])
    mask = flat.std(axis=0) > 0
    if not mask.any():
        raise ValueError("volume_series: no voxel varies across the training windows")
    return mask


def window_scores(pred: np.ndarray, true: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """``(pearson_r, mse)`` of one window ``(T, D, H, W)`` over the voxels of ``mask``."""
    if pred.shape != true.shape:
        raise ValueError(
            f"volume_series: predicted window of shape {pred.shape} but true window of "
            f"shape {true.shape}"
        )
    p = np.asarray(pred, dtype=np.float64)[:, mask]  # (T, V)
    t = np.asarray(true, dtype=np.float64)[:, mask]
    mse = float(((p - t) ** 2).mean())
    p = p - p.mean(axis=0)
    t = t - t.mean(axis=0)
    denom = np.sqrt((p**2).sum(axis=0) * (t**2).sum(axis=0))
    safe = np.where(denom > 0, denom, 1.0)
    r = np.where(denom > 0, (p * t).sum(axis=0) / safe, 0.0)
    return float(r.mean()), mse


def group_mean_windows(train_target, train_start, test_start) -> np.ndarray:
    """The training subjects' mean window at each test window's start ``(n_test, T, D, H, W)``."""
    train_target = np.asarray(train_target)
    train_start = np.asarray(train_start)
    overall = None
    out = []
    for start in np.asarray(test_start):
        at = train_target[train_start == start]
        if len(at):
            out.append(at.mean(axis=0, dtype=np.float64))
            continue
        if overall is None:
            overall = train_target.mean(axis=0, dtype=np.float64)
        out.append(overall)
    return np.stack(out).astype(np.float32)


def _check_shapes(data: ScoringInput) -> None:
    test, train = data.test, data.train
    pred, true = np.shape(test.prediction), np.shape(test.target)
    if pred != true:
        raise ValueError(
            f"volume_series: predictions of shape {pred} but targets of shape {true} "
            "(n windows, T, D, H, W)"
        )
    if np.shape(train.target)[1:] != true[1:]:
        raise ValueError(
            f"volume_series: training windows of shape {np.shape(train.target)[1:]} but "
            f"held-out windows of shape {true[1:]}"
        )
    if true[0] != len(test.subjects):
        raise ValueError(f"volume_series: {true[0]} windows but {len(test.subjects)} subjects")


def score_volume_series(data: ScoringInput) -> Scored:
    """Score the model and the group mean on each held-out subject's windows."""
    _check_shapes(data)
    train, test = data.train, data.test
    mask = brain_mask(train.target)
    group = group_mean_windows(train.target, train.window_start, test.window_start)
    predictions = {"model": np.asarray(test.prediction), "group_mean": group}
    subjects = np.asarray(test.subjects)
    units = sorted(set(subjects.tolist()))
    scores, per_unit, per_window = {}, {"units": units}, {}
    for name, pred in predictions.items():
        found = np.array(
            [window_scores(p, t, mask) for p, t in zip(pred, test.target, strict=True)]
        )
        per_window[name] = found
        values = {
            metric: [float(found[subjects == u, k].mean()) for u in units]
            for k, metric in enumerate(("pearson_r", "mse"))
        }
        values.update(subject_realism_ratios(pred, test.target, subjects, units, mask))
        per_unit[name] = values
        scores[name] = unit_scores(values)
    keep = slice(0, KEPT_WINDOWS)
    arrays = {
        "subjects": subjects,
        "window_start": np.asarray(test.window_start),
        "window_pearson_r": per_window["model"][:, 0],
        "window_mse": per_window["model"][:, 1],
        "kept_subjects": subjects[keep],
        "prediction": np.asarray(test.prediction[keep], dtype=np.float32),
        "target": np.asarray(test.target[keep], dtype=np.float32),
        "group_mean": group[keep],
        "brain_mask": mask,
    }
    extra = {
        "primary_metric": "pearson_r",
        "volume_series": {
            "in_brain_voxels": int(mask.sum()),
            "window_shape": list(np.shape(test.target)[1:]),
            "windows": len(subjects),
            "pearson_r": "voxel-wise over each window's volumes, mean over in-brain voxels "
            "and over the subject's windows",
            "group_mean": "training subjects' mean window at the same window start",
            "realism": "ratios predictor / truth of lag-1 autocorrelation, mean inter-voxel "
            "correlation and temporal SD over each window's in-brain voxels",
        },
    }
    return Scored(scores=scores, arrays=arrays, per_unit=per_unit, extra=extra)


def volume_sample_diversity(samples: np.ndarray, mask: np.ndarray) -> float:
    """The SD across samples ``(S, T, D, H, W)`` of each in-brain voxel and volume, averaged."""
    x = np.asarray(samples, dtype=np.float64)[:, :, mask]  # (S, T, V)
    return float(x.std(axis=0, ddof=1).mean()) if len(x) > 1 else 0.0


def volume_realism_statistics(windows: np.ndarray) -> dict[str, float]:
    """The :data:`VOLUME_REALISM` statistics of windows ``(n, T, V)`` (V in-brain voxels).

    Each over the voxels varying within the window, then averaged over windows; the mean
    inter-voxel correlation comes from the sum of the z-scored series,
    ``sum_{v,w} r_vw = sum_t (sum_v z_vt)^2 / T``, so no V x V matrix is formed."""
    x = np.asarray(windows, dtype=np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1)  # (n, V)
    a, b = x[:, 1:], x[:, :-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        lag1 = (a * b).mean(axis=1) / (a.std(axis=1) * b.std(axis=1))
    varying = sd > 0
    z = np.where(varying[:, None, :], x / np.where(sd > 0, sd, 1.0)[:, None, :], 0.0)
    k = varying.sum(axis=1)  # varying voxels per window
    pair_sum = (z.sum(axis=2) ** 2).sum(axis=1) / x.shape[1] - k  # off-diagonal sum
    with np.errstate(invalid="ignore", divide="ignore"):
        inter = np.where(k > 1, pair_sum / (k * (k - 1.0)), np.nan)
    finite = np.isfinite(lag1)
    return {
        "lag1_autocorrelation": float(lag1[finite].mean()) if finite.any() else float("nan"),
        "inter_voxel_correlation": float(np.nanmean(inter)) if (k > 1).any() else float("nan"),
        "temporal_sd": float(sd.mean()),
    }


def subject_realism_ratios(pred, truth, subjects, units, mask) -> dict[str, list[float]]:
    """Per held-out subject, the realism ratios of ``pred`` windows ``(n, T, D, H, W)``
    (or ``(n, S, T, D, H, W)`` samples: every sample window counts) to the true windows,
    with their parts ``realism_<statistic>`` and ``realism_truth_<statistic>`` (the score
    over subjects is the ratio of the parts' means: generative's ``unit_scores``)."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    out: dict[str, list[float]] = {}
    for u in units:
        rows = subjects == u
        true = volume_realism_statistics(truth[rows][..., mask])
        for key, value in unit_realism(pred[rows][..., mask], true).items():
            out.setdefault(key, []).append(value)
    return out


def unit_realism(windows: np.ndarray, true: dict[str, float], prefix: str = "") -> dict:
    """One subject's realism ratios of in-brain ``windows`` ``(n, [S,] T, V)`` (every
    sample window counts) to the truth's statistics ``true``, with their parts, keys
    ``<prefix>realism_ratio_<statistic>``, ``<prefix>realism_<statistic>`` and
    ``<prefix>realism_truth_<statistic>``."""
    found = volume_realism_statistics(windows.reshape(-1, *windows.shape[-2:]))
    out = {}
    for k in VOLUME_REALISM:
        out[f"{prefix}realism_ratio_{k}"] = _ratio(found[k], true[k])
        out[f"{prefix}realism_{k}"] = found[k]
        out[f"{prefix}realism_truth_{k}"] = true[k]
    return out


@dataclasses.dataclass
class VolumeSampleScores:
    """A generative model's sample scores, gathered one held-out subject at a time as its
    samples are drawn (:func:`modalmerge.stages.evaluate_samples.stream_volume_samples`),
    so no more than a subject's samples are held: ``by_unit`` maps a subject to
    :func:`volume_unit_sample_scores`, ``kept`` holds the first windows' samples for the
    figures."""

    by_unit: dict[str, dict[str, float]]
    n_samples: int
    kept: np.ndarray


def volume_unit_sample_scores(
    members, truth, starts, train_target, train_start, mask, mean=None
) -> dict[str, float]:
    """One held-out subject's sample scores (module docstring) from the samples ``members``
    ``(k, S, T, D, H, W)`` of its k windows ``truth`` ``(k, T, D, H, W)`` that start at
    ``starts``; ``mean``: their ensemble mean ``(k, T, D, H, W)`` (default: over S)."""
    members, truth = np.asarray(members), np.asarray(truth)
    mean = members.mean(axis=1) if mean is None else np.asarray(mean)
    samples, voxel_truth = members[..., mask], truth[..., mask]  # in-brain, masked once
    crps, climate, diversity = [], [], []
    for m, y, start in zip(members, truth, starts, strict=True):
        voxels = y[:, mask]
        crps.append(crps_ensemble(m[:, :, mask], voxels).mean())
        clim = climatology_members(train_target, train_start, start)
        climate.append(crps_ensemble(clim[:, :, mask], voxels).mean())
        diversity.append(volume_sample_diversity(m, mask))
    out = {
        "crps": float(np.mean(crps)),
        "crps_climatology": float(np.mean(climate)),
        "spread_skill": spread_skill(np.moveaxis(samples, 1, 0), voxel_truth),
    }
    true = volume_realism_statistics(voxel_truth)
    out.update(unit_realism(mean[..., mask], true, "ensemble_mean_"))
    out.update(unit_realism(samples, true))
    out["sample_diversity"] = float(np.mean(diversity))
    return out


def add_volume_sample_scores(scored: Scored, samples: np.ndarray, test, train) -> None:
    """Add the scores of a generative model's ``samples`` ``(n, S, T, D, H, W)`` to
    ``scored`` (in place; module docstring): per held-out subject in ``per_unit``, their
    means in ``scores``, the paired CRPS difference climatology - model under
    ``generative``; the first windows' samples go to ``predictions.npz``. The evaluate
    stage streams them instead (:class:`VolumeSampleScores`); both give the same scores."""
    samples = np.asarray(samples)
    if samples.shape[:1] + samples.shape[2:] != np.shape(test.target):
        raise ValueError(
            f"volume_series: samples of shape {samples.shape} do not match the held-out "
            f"windows {np.shape(test.target)} (n, S, T, D, H, W)"
        )
    check_sample_count(samples.shape[1])
    mask = brain_mask(train.target)
    truth, subjects = np.asarray(test.target), np.asarray(test.subjects)
    prediction = None if test.prediction is None else np.asarray(test.prediction)
    train_target, train_start = np.asarray(train.target), np.asarray(train.window_start)
    by_unit = {}
    for u in scored.per_unit["units"]:
        rows = subjects == u
        mean = None if prediction is None else prediction[rows]
        by_unit[u] = volume_unit_sample_scores(
            samples[rows], truth[rows], np.asarray(test.window_start)[rows],
            train_target, train_start, mask, mean,
        )  # fmt: skip
    finish_volume_sample_scores(
        scored, VolumeSampleScores(by_unit, samples.shape[1], samples[:KEPT_WINDOWS])
    )


def check_sample_count(n_samples: int) -> None:
    """CRPS and the spread need two samples per window at least."""
    if n_samples < 2:
        raise ValueError(f"volume_series: CRPS and spread need >= 2 samples, got {n_samples}")


def finish_volume_sample_scores(scored: Scored, found: VolumeSampleScores) -> None:
    """Write the per-subject sample scores ``found`` into ``scored`` in its units' order,
    with their means, the paired CRPS difference and the kept samples."""
    units = scored.per_unit["units"]
    if set(found.by_unit) != set(units):
        raise ValueError("volume_series: sample scores and window scores disagree on the units")
    model = scored.per_unit["model"]
    for key in found.by_unit[units[0]]:
        model[key] = [found.by_unit[u][key] for u in units]
    scored.per_unit["climatology"] = {"crps": list(model["crps_climatology"])}
    for name in ("model", "climatology"):
        scored.scores[name] = unit_scores(scored.per_unit[name])
    diff = paired_difference(model["crps_climatology"], model["crps"])
    scored.extra.setdefault("generative", {}).update(
        samples_per_window=int(found.n_samples),
        crps_estimator="fair ensemble CRPS (Ferro 2014) per in-brain voxel and volume",
        climatology="training subjects' windows at the same window start",
        crps_climatology_minus_model=dataclasses.asdict(diff),
        sample_diversity="SD across samples per in-brain voxel and volume, averaged",
    )
    scored.arrays["samples"] = np.asarray(found.kept[:KEPT_WINDOWS], dtype=np.float32)
