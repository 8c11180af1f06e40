"""Brain decoding: the task condition of each volume of a 4D window, scored per held-out subject.

The workflow's evaluate stage calls :func:`score_decoding` for an experiment with
``target: tabular`` and ``target_data: task_condition`` (``configs/decoding.yaml``): the
target is the window's ``task_condition`` (shards with ``shard.volume_series``), read as a
table of T categorical columns (one per volume, K classes: rest and the trial types), so a
:class:`~modalmerge.models.MultiModalModel` from ``volume_series`` (``spatiotemporal``
encoder) to ``tabular`` (``mlp`` decoder: one query and one classification head per
volume) predicts every volume's condition from the whole window. It is trained by the
train stage like every experiment and compared, on the same test windows, with

- ``logistic``: multinomial logistic regression (scikit-learn) from the volume's ROI
  vector (the parcellated series of the same window, z-scored with the training
  volumes' statistics), its C chosen on the validation subjects;
- ``logistic_context``: the same from the ROI vectors of the volume and its two
  neighbours on each side (edge-padded within the window), so the baseline too sees
  the hemodynamic time course around the volume;
- ``chance``: the training volumes' most frequent condition for every volume.

Scores per held-out subject, over its windows' volumes: ``accuracy`` and
``balanced_accuracy`` (the mean recall over the conditions present in the subject's
volumes, scikit-learn's ``balanced_accuracy_score``; the primary metric, since rest
volumes outnumber each trial type, and chance's balanced accuracy is 1/K whatever the
class shares). ``summarize`` draws the intervals and the paired differences model -
logistic, model - logistic_context and model - chance
(:mod:`modalmerge.evaluation.intervals`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modalmerge.data.shards.dataset import ShardDataset
from modalmerge.evaluation.scoring import Scored, ScoringInput
from modalmerge.io import InputError

C_GRID = (0.01, 0.1, 1.0, 10.0)
CONTEXT = 2  # volumes on each side for logistic_context
#: the baselines of a decoding experiment (``summary`` predictors and baselines)
DECODING_BASELINES = ("logistic", "logistic_context", "chance")


def roi_windows(shard_dir: str | Path, split: str) -> dict:
    """The ROI series of every window of ``split`` with its task conditions:
    ``{"x": (n, T, R), "y": (n, T) int codes, "subject": (n,), "window_start": (n,)}``."""
    dataset = ShardDataset(shard_dir, split, "time_series", "task_condition")
    try:
        batch = dataset.get_batch(np.arange(len(dataset)))
    finally:
        dataset.close()
    return {
        "x": batch["condition"].numpy(),
        "y": batch["target"].numpy().astype(np.int64),
        "subject": np.asarray(batch["subject"]),
        "window_start": batch["window_start"].numpy().astype(np.int64),
    }


def task_condition_names(manifest: dict, shard_dir) -> list[str]:
    """The manifest's ``volume_series.task_conditions`` (code i = name i)."""
    names = (manifest.get("volume_series") or {}).get("task_conditions")
    if not names:
        raise InputError(
            Path(shard_dir) / "manifest.json",
            "no task conditions (the brain-decoding target, target_data task_condition): "
            "write the shards with shard.volume_series.enabled and an events table",
        )
    return list(names)


def per_subject_accuracy(correct: np.ndarray, subjects: np.ndarray) -> dict[str, float]:
    """Mean of ``correct`` (n_windows, T) bool per subject (its windows' volumes)."""
    return {s: float(correct[subjects == s].mean()) for s in sorted(set(subjects.tolist()))}


def _context_features(x: np.ndarray, k: int) -> np.ndarray:
    """(n, T, R) -> (n, T, (2k + 1) R): each volume with its k neighbours per side."""
    padded = np.pad(x, ((0, 0), (k, k), (0, 0)), mode="edge")
    t = x.shape[1]
    return np.concatenate([padded[:, j : j + t] for j in range(2 * k + 1)], axis=2)


def logistic_baseline(train: dict, val: dict, test: dict, context: int) -> tuple[np.ndarray, dict]:
    """Per-volume logistic regression on ROI vectors; C by validation accuracy.

    Returns the test predictions (n_windows, T) and ``{"C": ..., "val_accuracy": ...}``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def rows(d: dict) -> tuple[np.ndarray, np.ndarray]:
        x = _context_features(d["x"], context) if context else d["x"]
        return x.reshape(-1, x.shape[-1]), d["y"].reshape(-1)

    (xt, yt), (xv, yv), (xs, _) = rows(train), rows(val), rows(test)
    best = None
    for c in C_GRID:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        clf.fit(xt, yt)
        acc = float((clf.predict(xv) == yv).mean())
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    acc, c, clf = best
    return clf.predict(xs).reshape(test["y"].shape), {"C": c, "val_accuracy": acc}


def per_subject_balanced_accuracy(
    truth: np.ndarray, predicted: np.ndarray, subjects: np.ndarray
) -> dict[str, float]:
    """Balanced accuracy of each subject's volumes (``(n_windows, T)`` codes): the mean
    recall over the conditions present in that subject's true codes."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    out = {}
    for s in sorted(set(subjects.tolist())):
        rows = subjects == s
        with warnings.catch_warnings():  # a predicted class absent from the truth is fine
            warnings.simplefilter("ignore", UserWarning)
            out[s] = float(balanced_accuracy_score(truth[rows].ravel(), predicted[rows].ravel()))
    return out


def _check_rows(test, rois: dict) -> None:
    """The ROI windows must be the evaluated windows, row for row."""
    same = (
        len(rois["subject"]) == len(test.subjects)
        and (rois["subject"] == np.asarray(test.subjects)).all()
        and (rois["window_start"] == np.asarray(test.window_start)).all()
        and (rois["y"] == np.asarray(test.target).astype(np.int64)).all()
    )
    if not same:
        raise ValueError(
            "decoding: the ROI windows of the test split are not the evaluated windows "
            f"({len(rois['subject'])} against {len(test.subjects)}, or in another order)"
        )


def score_decoding(data: ScoringInput, rois: dict[str, dict], names: list[str]) -> Scored:
    """Score the model's per-volume conditions and the baselines per held-out subject.

    ``data.test.prediction`` holds the model's codes ``(n, T)`` (the argmax of each
    volume's head) and ``data.test.target`` the true codes; ``rois`` maps ``train``,
    ``val`` and ``test`` to :func:`roi_windows` (the logistic baselines' inputs, C chosen
    on ``val``); ``names`` are the K conditions.
    """
    test = data.test
    truth = np.asarray(test.target).astype(np.int64)
    if np.shape(test.prediction) != truth.shape:
        raise ValueError(
            f"decoding: predictions of shape {np.shape(test.prediction)} but targets of "
            f"shape {truth.shape} (n windows, T volumes)"
        )
    _check_rows(test, rois["test"])
    subjects = np.asarray(test.subjects)
    predictions = {"model": np.asarray(test.prediction).round().astype(np.int64)}
    chosen = {}
    for name, context in (("logistic", 0), ("logistic_context", CONTEXT)):
        predictions[name], chosen[name] = logistic_baseline(
            rois["train"], rois["val"], rois["test"], context
        )
    majority = int(np.bincount(rois["train"]["y"].ravel(), minlength=len(names)).argmax())
    predictions["chance"] = np.full_like(truth, majority)
    chosen["chance"] = {"class": names[majority]}
    units = sorted(set(subjects.tolist()))
    per_unit: dict = {"units": units}
    scores = {}
    for name, pred in predictions.items():
        accuracy = per_subject_accuracy(pred == truth, subjects)
        balanced = per_subject_balanced_accuracy(truth, pred, subjects)
        per_unit[name] = {
            "balanced_accuracy": [balanced[u] for u in units],
            "accuracy": [accuracy[u] for u in units],
        }
        scores[name] = {m: float(np.mean(v)) for m, v in per_unit[name].items()}
    arrays = {
        "subjects": subjects,
        "window_start": np.asarray(test.window_start),
        "target": truth.astype(np.int8),
        **{f"prediction_{k}" if k != "model" else "prediction": v.astype(np.int8)
           for k, v in predictions.items()},
    }  # fmt: skip
    extra = {
        "primary_metric": "balanced_accuracy",
        "decoding": {
            "target": "task_condition of each volume (categorical)",
            "conditions": names,
            "class_shares": np.bincount(truth.ravel(), minlength=len(names)).tolist(),
            "chosen": chosen,
            "n_test_windows": int(len(subjects)),
        },
    }
    return Scored(scores=scores, arrays=arrays, per_unit=per_unit, extra=extra)
