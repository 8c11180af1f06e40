"""What the per-modality scorers share: their input, their result, and the step
from samples (windows) to subjects.

A scorer takes a :class:`ScoringInput` (the train and test splits as arrays,
the ridge features of their conditions, the baseline settings) and RETURNS a
:class:`Scored` (scores per predictor, per-ROI lists, arrays for
``predictions.npz``, further ``metrics.json`` keys); it mutates nothing it is
given. The evaluate stage (:mod:`modalmerge.stages.evaluate`) only loads,
dispatches on the target modality and writes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from modalmerge.evaluation.baselines import RidgeBaseline

PREDICTORS = ("model", "group_mean", "ridge")
#: the predictors a scorer may add: ``ridge_parcel`` (ridge on the parcel structural features)
BASELINES = ("group_mean", "ridge", "ridge_parcel")


class Split(Protocol):
    """One split as arrays (:class:`modalmerge.stages.common.SplitArrays`)."""

    subjects: list[str]
    window_start: np.ndarray
    condition: np.ndarray | None
    target: np.ndarray | None
    prediction: np.ndarray | None
    categorical_scores: list[np.ndarray]
    attention: np.ndarray | None


@dataclass(frozen=True)
class BaselineSettings:
    """How the ridge baseline is fitted: ``RidgeCV`` over ``alphas``, PCA of wide inputs."""

    alphas: np.ndarray
    n_components: int | None = None


@dataclass
class ScoringInput:
    """Everything a scorer reads: the condition modality, both splits, the ridge features of each sample's
    condition (:func:`condition_features`) and the baseline settings."""

    condition: str
    train: Split
    test: Split
    x_train: np.ndarray | None
    x_test: np.ndarray
    baselines: BaselineSettings
    parcel_train: np.ndarray | None = None
    parcel_test: np.ndarray | None = None
    #: the training split as a stream (:data:`modalmerge.evaluation.streaming.TrainStream`)
    #: instead of arrays: ``train`` then holds nothing and ``x_train`` is None
    train_stream: Any = None

    def ridge_inputs(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{ridge predictor: (train features, test features)}``: ``ridge`` on the
        condition's features, and ``ridge_parcel`` on the parcel structural features
        of each sample's subject when the evaluate stage gave them."""
        inputs = {"ridge": (self.x_train, self.x_test)}
        if self.parcel_train is not None and self.parcel_test is not None:
            inputs["ridge_parcel"] = (self.parcel_train, self.parcel_test)
        return inputs


@dataclass
class Scored:
    """A scorer's result.

    Attributes
    ----------
    scores : dict
        ``{predictor: {metric: value}}`` (``metrics.json`` ``scores``).
    arrays : dict
        Arrays for ``predictions.npz``.
    per_roi : dict
        ``{predictor: {metric: [value per ROI]}}``; empty when not per ROI.
    per_unit : dict
        ``{"units": [held-out unit ids], predictor: {metric: [value per unit]}}``
        (``metrics.json`` ``per_unit``): a unit is a test subject (subject splits),
        a subject's test block (time splits) or a test region (region samples).
    extra : dict
        Further ``metrics.json`` keys (``split_by``, ``ssim_sigma``, ``homolog_attention`` ...).
    """

    scores: dict[str, dict[str, float]]
    arrays: dict[str, np.ndarray]
    per_roi: dict = field(default_factory=dict)
    per_unit: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def condition_features(modality: str, condition: np.ndarray, vocab_size: int | None) -> np.ndarray:
    """Features the ridge baseline sees for each sample's condition."""
    if modality == "text":  # bag of words over the model's vocabulary (pad/bos/eos dropped)
        ids = condition.astype(np.int64)
        counts = np.zeros((len(ids), int(vocab_size)), dtype=np.float32)
        for row, sample in enumerate(ids):
            np.add.at(counts[row], sample[sample > 2], 1.0)
        return counts
    if modality == "point_cloud":
        return point_cloud_summary(condition)
    return condition.reshape(len(condition), -1)


def point_cloud_summary(clouds: np.ndarray) -> np.ndarray:
    """Ridge features of clouds ``(n, N, 3 + F)``: each feature's mean and SD over the cloud
    and its mean in each of the 8 octants around the origin (signs of x, y, z), ``10 F`` in all.

    The points of two clouds are not in correspondence (each subject's surface is sampled
    afresh), so the flattened cloud that other conditions give the ridge would be noise;
    octant means are a coarse, order-free regional summary."""
    xyz, features = clouds[..., :3], clouds[..., 3:].astype(np.float64)
    octant = (xyz[..., 0] > 0) * 4 + (xyz[..., 1] > 0) * 2 + (xyz[..., 2] > 0)  # (n, N)
    parts = [features.mean(axis=1), features.std(axis=1)]
    for k in range(8):
        inside = (octant == k)[..., None]
        count = inside.sum(axis=1).clip(1)
        parts.append((features * inside).sum(axis=1) / count)
    return np.concatenate(parts, axis=1).astype(np.float32)


def fit_ridge(x_train, y_train, settings: BaselineSettings, categorical_columns=()):
    """The ridge baseline fitted on training rows (PCA to at most ``n_samples - 1``)."""
    n_components = min(settings.n_components or len(x_train), len(x_train) - 1) or None
    return RidgeBaseline(
        alphas=settings.alphas, categorical_columns=categorical_columns, n_components=n_components
    ).fit(x_train, y_train)


def stitch(windows: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild one run from windows ``(n, W, R)`` starting at ``starts``; overlaps averaged.

    Returns the series ``(T_covered, R)`` and the absolute time index of its rows.
    """
    width = windows.shape[1]
    end = int(starts.max()) + width
    total = np.zeros((end, windows.shape[2]), dtype=np.float64)
    count = np.zeros(end, dtype=np.int64)
    for window, start in zip(windows, starts, strict=True):
        total[start : start + width] += window
        count[start : start + width] += 1
    covered = np.flatnonzero(count)
    return (total[covered] / count[covered, None]).astype(np.float32), covered


def subject_rows(subjects: list[str]) -> dict[str, np.ndarray]:
    """Row indices of each subject's samples, in order of first appearance."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, subject in enumerate(subjects):
        groups[subject].append(i)
    return {s: np.asarray(rows) for s, rows in groups.items()}


def per_subject(subjects: list[str], values: np.ndarray) -> dict[str, np.ndarray]:
    """Each subject's rows of ``values``."""
    return {s: values[rows] for s, rows in subject_rows(subjects).items()}


def subject_mean(values: np.ndarray, subjects: list[str]) -> tuple[list[str], np.ndarray]:
    """Sorted subjects and the mean of each one's rows of ``values``."""
    by_subject = per_subject(subjects, values)
    keys = sorted(by_subject)
    return keys, np.stack([by_subject[k].mean(axis=0) for k in keys])


def attention_peaks(attention: np.ndarray, pairs: dict[int, int]) -> list[int]:
    """Target rows of ``attention`` ``(n_target, n_condition)`` whose peak lies on their
    paired condition column (``pairs``: target row -> condition column)."""
    peaks = attention.argmax(axis=1)
    return [i for i, j in pairs.items() if peaks[i] == j]


def attention_peak_null(
    attention: np.ndarray, pairs: dict[int, int], n_permutations: int = 1000, seed: int = 0
) -> dict[str, float]:
    """A permutation null for the fraction of paired target rows whose attention peaks on
    their paired condition column (:func:`attention_peaks`).

    Each draw permutes the condition columns' region labels (a seeded random
    permutation ``perm`` of the ``n_condition`` columns, so target row ``i`` is
    paired with column ``perm[pairs[i]]``) and scores the fraction again; the
    attention and its peaks stay as they are.

    Returns ``null`` (mean over the draws; about 1 / n_condition), ``null_p95``
    (their 95th percentile) and ``p_value``: (1 + draws scoring >= observed) /
    (1 + n_permutations), the one-sided permutation p-value with the +1 correction
    (never 0; at least 1 / (1 + n_permutations)).
    """
    peaks = attention.argmax(axis=1)
    rows = np.fromiter(pairs.keys(), dtype=int, count=len(pairs))
    cols = np.fromiter(pairs.values(), dtype=int, count=len(pairs))
    observed = float(np.mean(peaks[rows] == cols))
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_permutations, attention.shape[1])), axis=1)
    null = (perms[:, cols] == peaks[rows][None, :]).mean(axis=1)
    return {
        "null": float(null.mean()),
        "null_p95": float(np.percentile(null, 95)),
        "p_value": float((1 + np.sum(null >= observed)) / (1 + n_permutations)),
    }


def with_null(
    name: str, scores: dict[str, float], attention: np.ndarray, pairs: dict[int, int]
) -> tuple[dict[str, float], dict]:
    """``scores`` with ``<name>_null``, ``<name>_null_p95`` and ``<name>_p_value``
    (:func:`attention_peak_null`, 1,000 draws, seed 0) added, and the record entries
    that say how the null was drawn."""
    null = attention_peak_null(attention, pairs, NULL_PERMUTATIONS, NULL_SEED)
    scores = {**scores, **{f"{name}_{k}": v for k, v in null.items() if k != "p_value"}}
    scores[f"{name}_p_value"] = null["p_value"]
    return scores, {"null_permutations": NULL_PERMUTATIONS, "null_seed": NULL_SEED}


NULL_PERMUTATIONS = 1000
"""Draws of the attention permutation null (:func:`attention_peak_null`)."""
NULL_SEED = 0
"""Seed of the attention permutation null."""
