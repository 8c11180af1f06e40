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
    subject_rows,
)
from modalmerge.models.text import BOS_ID, PAD_ID


def score_tabular(data: ScoringInput, n_categorical: int) -> Scored:
    """Score the model, the training mean / majority and ridge on each test subject's row.

    The target's last ``n_categorical`` columns hold category codes: the model's
    class scores are averaged per subject before the argmax, the group baseline
    predicts the training majority, and ridge predicts the numeric columns only
    (its categorical columns are the majority too; no ridge without numeric columns).
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
    predictions = {"model": pred, "group_mean": group_pred}
    # a table of categorical columns only has nothing for ridge to regress: no ridge rows
    # (they would repeat the majority baseline)
    ridge_inputs = data.ridge_inputs() if n_num else {}
    for name, (x_train, x_test) in ridge_inputs.items():
        ridge = fit_ridge(x_train, train.target[:, :n_num], data.baselines)
        ridge_num = subject_mean(ridge.predict(x_test), test.subjects)[1]
        predictions[name] = np.concatenate([ridge_num, group_pred[:, n_num:]], axis=1)

    def score(p):
        numeric = (p[:, :n_num], true[:, :n_num]) if n_num else (None, None)
        codes = (p[:, n_num:], true[:, n_num:]) if n_cat else (None, None)
        return modality_metrics.tabular_metrics(*numeric, *codes)["scores"]

    arrays = {"subjects": np.asarray(keys), "prediction": pred, "target": true}
    arrays.update({name: p for name, p in predictions.items() if name != "model"})
    per_unit = {"units": list(keys)}
    per_unit.update({k: row_scores(p, true, n_num) for k, p in predictions.items()})
    return Scored(
        scores={k: score(p) for k, p in predictions.items()},
        arrays=arrays,
        per_unit=per_unit,
        extra={"primary_metric": "r2" if n_num else "accuracy"},
    )


def row_scores(pred: np.ndarray, true: np.ndarray, n_numeric: int) -> dict[str, list[float]]:
    """Each test subject's (row's) share of the table scores, for intervals.

    - ``r2``: ``1 - n * mean_c(e_ic² / SST_c)`` over the numeric columns whose
      test values vary (``SST_c`` their sum of squares about the test mean, ``n``
      the rows): its mean over rows is the mean column R², the headline ``r2``
      when no column is constant (R² itself is a statistic of the whole set,
      not of one row);
    - ``mae``: the row's mean absolute error over numeric columns;
    - ``accuracy``: the fraction of the row's categorical columns predicted right.
    """
    out: dict[str, list[float]] = {}
    num_pred = np.asarray(pred[:, :n_numeric], np.float64)
    num_true = np.asarray(true[:, :n_numeric], np.float64)
    if n_numeric:
        err = num_pred - num_true
        sst = ((num_true - num_true.mean(axis=0)) ** 2).sum(axis=0)
        varies = sst > 0
        if varies.any() and len(true) >= 2:
            share = (err[:, varies] ** 2 / sst[varies]).mean(axis=1)
            out["r2"] = (1.0 - len(true) * share).tolist()
        out["mae"] = np.abs(err).mean(axis=1).tolist()
    if pred.shape[1] > n_numeric:
        out["accuracy"] = (pred[:, n_numeric:] == true[:, n_numeric:]).mean(axis=1).tolist()
    return out


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
    # per test subject: the token accuracy of its own texts (unit = subject)
    rows = subject_rows(data.test.subjects)
    units = sorted(rows)
    unigram_ids = unigram.argmax(-1)
    per_unit: dict = {"units": units, "model": {}, "group_mean": {}}
    for name, ids in (("model", arrays["prediction"]), ("group_mean", unigram_ids)):
        per_unit[name]["token_accuracy"] = [
            modality_metrics.token_accuracy(ids[rows[u]], true[rows[u]], bos_id=BOS_ID)
            for u in units
        ]
    extra = {"primary_metric": "token_accuracy"}
    return Scored(scores=scores, arrays=arrays, per_unit=per_unit, extra=extra)
