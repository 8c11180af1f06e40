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

For a generative model (``method: diffusion``) the prediction is the ensemble mean of
its samples (:mod:`modalmerge.stages.evaluate_samples`), and :func:`add_volume_sample_scores`
adds ``sample_diversity`` (the mean over windows of the voxel-wise SD across samples,
averaged over in-brain voxels and volumes: 0 when every sample is the same window).
"""

from __future__ import annotations

import numpy as np

from modalmerge.evaluation.scoring import Scored, ScoringInput

#: windows whose prediction, truth and group mean are kept in predictions.npz
KEPT_WINDOWS = 4


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
        per_unit[name] = values
        scores[name] = {metric: float(np.mean(v)) for metric, v in values.items()}
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
        },
    }
    return Scored(scores=scores, arrays=arrays, per_unit=per_unit, extra=extra)


def volume_sample_diversity(samples: np.ndarray, mask: np.ndarray) -> float:
    """The SD across samples ``(S, T, D, H, W)`` of each in-brain voxel and volume, averaged."""
    x = np.asarray(samples, dtype=np.float64)[:, :, mask]  # (S, T, V)
    return float(x.std(axis=0, ddof=1).mean()) if len(x) > 1 else 0.0


def add_volume_sample_scores(scored: Scored, samples: np.ndarray, test, train) -> None:
    """Add ``sample_diversity`` of a generative model's ``samples`` ``(n, S, T, D, H, W)``
    to ``scored`` (in place): per held-out subject in ``per_unit`` and its mean in
    ``scores['model']``; the first windows' samples go to ``predictions.npz``."""
    samples = np.asarray(samples)
    if samples.shape[:1] + samples.shape[2:] != np.shape(test.target):
        raise ValueError(
            f"volume_series: samples of shape {samples.shape} do not match the held-out "
            f"windows {np.shape(test.target)} (n, S, T, D, H, W)"
        )
    mask = brain_mask(train.target)
    diversity = np.array([volume_sample_diversity(s, mask) for s in samples])
    subjects = np.asarray(test.subjects)
    units = scored.per_unit["units"]
    scored.per_unit["model"]["sample_diversity"] = [
        float(diversity[subjects == u].mean()) for u in units
    ]
    scored.scores["model"]["sample_diversity"] = float(
        np.mean(scored.per_unit["model"]["sample_diversity"])
    )
    scored.extra.setdefault("generative", {}).update(
        samples_per_window=int(samples.shape[1]),
        sample_diversity="SD across samples per in-brain voxel and volume, averaged",
    )
    scored.arrays["samples"] = samples[:KEPT_WINDOWS].astype(np.float32)
