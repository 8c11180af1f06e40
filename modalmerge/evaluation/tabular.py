"""Scoring table and text targets per held-out subject."""

from __future__ import annotations

import numpy as np

from modalmerge.evaluation import modality_metrics
from modalmerge.evaluation.baselines import GroupMeanBaseline
from modalmerge.evaluation.scoring import (
    Scored,
    ScoringInput,
    fit_ridge,
    per_subject,
    subject_mean,
)
from modalmerge.models.text import BOS_ID, PAD_ID


def score_tabular(data: ScoringInput, n_categorical: int) -> Scored:
    """Score the model, the training mean / majority and ridge on each test subject's row.

    The target's last ``n_categorical`` columns hold category codes: the model's
    class scores are averaged per subject before the argmax, the group baseline
    predicts the training majority, and ridge predicts the numeric columns only
    (its categorical columns are the majority too).
    """
    train, test = data.train, data.test
    n_cat, n_num = n_categorical, train.target.shape[1] - n_categorical
    keys, true = subject_mean(test.target, test.subjects)
    numeric_pred = per_subject(test.subjects, test.prediction[:, :n_num])
    numeric = np.stack([numeric_pred[k].mean(axis=0) for k in keys])
    categorical = []
    for scores in test.categorical_scores:
        by_subject = per_subject(test.subjects, scores)
        categorical.append(np.stack([by_subject[k].mean(axis=0) for k in keys]))
    model_codes = (
        np.stack([c.argmax(axis=1) for c in categorical], axis=1)
        if categorical
        else (np.zeros((len(keys), 0)))
    )
    pred = np.concatenate([numeric, model_codes], axis=1)
    majority = [
        GroupMeanBaseline("majority").fit(None, train.target[:, n_num + j]).predict(len(keys))
        for j in range(n_cat)
    ]
    group_pred = np.concatenate(
        [GroupMeanBaseline("mean").fit(None, train.target[:, :n_num]).predict(len(keys))]
        + [m.reshape(-1, 1) for m in majority],
        axis=1,
    )
    ridge = fit_ridge(data.x_train, train.target[:, :n_num], data.baselines)
    _, ridge_num = subject_mean(ridge.predict(data.x_test), test.subjects)
    ridge_pred = np.concatenate([ridge_num, group_pred[:, n_num:]], axis=1)

    def score(p):
        numeric = (p[:, :n_num], true[:, :n_num]) if n_num else (None, None)
        codes = (p[:, n_num:], true[:, n_num:]) if n_cat else (None, None)
        return modality_metrics.tabular_metrics(*numeric, *codes)["scores"]

    predictions = {"model": pred, "group_mean": group_pred, "ridge": ridge_pred}
    arrays = {"subjects": np.asarray(keys), "prediction": pred, "target": true}
    arrays.update(group_mean=group_pred, ridge=ridge_pred)
    return Scored(scores={k: score(p) for k, p in predictions.items()}, arrays=arrays)


def score_text(data: ScoringInput) -> Scored:
    """Score the model's next-token logits and a unigram baseline on every test sample.

    The group "mean" for text is the training corpus's unigram distribution
    (add-one smoothed, padding and bos excluded) at every position; there is no ridge.
    """
    logits, true = data.test.prediction, data.test.target.astype(np.int64)
    # bos at position 0 is given to the decoder, not predicted: neither side is scored on it
    model_scores = modality_metrics.text_metrics(logits, true, bos_id=BOS_ID)["scores"]
    counts = np.bincount(data.train.target.astype(np.int64).ravel(), minlength=logits.shape[-1])
    counts[[PAD_ID, BOS_ID]] = 0
    probs = (counts + 1.0) / (counts + 1.0).sum()
    unigram = np.broadcast_to(np.log(probs), logits.shape)
    scores = {
        "model": model_scores,
        "group_mean": modality_metrics.text_metrics(unigram, true, bos_id=BOS_ID)["scores"],
    }
    arrays = {
        "subjects": np.asarray(data.test.subjects),
        "prediction": logits.argmax(-1),
        "target": true,
    }
    return Scored(scores=scores, arrays=arrays)
