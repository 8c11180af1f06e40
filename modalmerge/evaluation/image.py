"""Scoring an image target per held-out subject: SSIM, PSNR, MSE, and Dice for label images."""

from __future__ import annotations

import logging

import numpy as np

from modalmerge.evaluation import modality_metrics
from modalmerge.evaluation.baselines import GroupMeanBaseline
from modalmerge.evaluation.scoring import Scored, ScoringInput, fit_ridge, subject_mean

log = logging.getLogger(__name__)


def score_image(data: ScoringInput, *, segmentation: bool = False) -> Scored:
    """Score the model, the training mean image and ridge on each test subject's mean image.

    With ``segmentation`` (the target channels are label images, e.g. BraTS's
    ``dseg``), every predictor is also scored by Dice (:func:`segmentation_scores`).
    """
    train, test = data.train, data.test
    keys, pred = subject_mean(test.prediction, test.subjects)
    _, true = subject_mean(test.target, test.subjects)
    data_range = float(np.ptp(train.target)) or 1.0
    group_pred = GroupMeanBaseline("mean").fit(None, train.target).predict(len(keys))
    predictions = {"model": pred, "group_mean": group_pred}
    for name, (x_train, x_test) in data.ridge_inputs().items():
        ridge = fit_ridge(x_train, train.target, data.baselines)
        predictions[name] = subject_mean(ridge.predict(x_test), test.subjects)[1]
    # SSIM's standard 11-voxel window (sigma 1.5), narrowed for images smaller than it
    smallest = min(true.shape[2:])
    sigma = min(1.5, ((smallest - 1) // 2) / 3.5)
    extra = {"primary_metric": "ssim"}
    if sigma < 1.5:
        log.info("images of side %d: SSIM with sigma %.3g (window %d)", smallest, sigma, smallest)
        extra["ssim_sigma"] = sigma
    scores, per_unit = {}, {"units": list(keys)}
    for name, p in predictions.items():
        result = modality_metrics.image_metrics(p, true, data_range=data_range, sigma=sigma)
        scores[name], per_unit[name] = result["scores"], result["per_image"]
    if segmentation:
        dice = segmentation_scores(predictions, true, train.target)
        scores = {name: {**scores[name], **dice[name]} for name in scores}
    arrays = {"subjects": np.asarray(keys), "prediction": pred, "target": true}
    arrays.update({name: p for name, p in predictions.items() if name != "model"})
    return Scored(scores=scores, arrays=arrays, per_unit=per_unit, extra=extra)


def nearest_label(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each value replaced by the nearest of the (sorted) label values."""
    edges = (labels[1:] + labels[:-1]) / 2
    return labels[np.searchsorted(edges, values)]


def dice_scores(pred: np.ndarray, true: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Dice of label images, pooled over all images: ``dice`` (mean over the non-zero
    labels present in ``true``) and ``dice_foreground`` (any non-zero label)."""

    def dice(p, t):
        total = p.sum() + t.sum()
        return 1.0 if total == 0 else float(2 * np.logical_and(p, t).sum() / total)

    present = [v for v in labels if v != 0 and (true == v).any()]
    scores = {"dice_foreground": dice(pred != 0, true != 0)}
    if present:
        scores["dice"] = float(np.mean([dice(pred == v, true == v) for v in present]))
    return scores


def segmentation_scores(
    predictions: dict[str, np.ndarray], true: np.ndarray, train_target: np.ndarray
) -> dict[str, dict[str, float]]:
    """Dice of each predictor's label image: predictions are rounded to the nearest
    label value seen in training (``train_target``), the truth to integers."""
    labels = np.unique(np.rint(train_target))
    true = np.rint(true)
    return {
        name: dice_scores(nearest_label(predictions[name], labels), true, labels)
        for name in predictions
    }
