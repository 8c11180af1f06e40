"""Evaluate one trained experiment on held-out test subjects, against baselines.

Predictors, all scored on the same test subjects of the same split:

- ``model`` — the trained experiment;
- ``group_mean`` — fitted on the training subjects only: the average training
  target at the same absolute time points (time series) or the mean / majority
  target (other modalities);
- ``ridge`` — scikit-learn ``RidgeCV`` from the condition's features (image
  voxels through a train-only PCA, table columns one-hot, word counts; for a
  time-series condition the condition ROIs at each volume -> the target ROIs at
  the same volume), fitted on the training subjects only;

With ``shard.split_by: time`` (blocks of the same runs), ``group_mean`` is the
mean training window (nothing else is known about later volumes), and a
time-series -> time-series cross-attention model between two ROI views whose
names pair up (left/right homologs) also reports
``homolog_attention_fraction``: the fraction of target ROIs whose attention,
averaged over heads and test windows, peaks on their homolog.
- ``noise_ceiling`` — synthetic data only: the correlation of the true evoked
  signal with the observed one.

Time-series targets are scored per subject on the whole run, rebuilt from the
sliding windows (overlaps averaged). Outputs: ``metrics.json`` (schema in
:mod:`modalmerge.evaluation.summary`) and ``predictions.npz`` (per test subject:
``subjects``, ``prediction``, ``target``, ``group_mean``, ``ridge``, and for
time series ``time_index``, ``truth_evoked`` when known).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from modalmerge.data.shards.split_arrays import read_manifest, roi_columns, roi_names
from modalmerge.evaluation import metrics as ts_metrics
from modalmerge.evaluation import modality_metrics
from modalmerge.evaluation.baselines import GroupMeanBaseline, RidgeBaseline
from modalmerge.evaluation.summary import write_metrics
from modalmerge.io import InputError, atomic_path, require_file
from modalmerge.models.text import BOS_ID, PAD_ID
from modalmerge.stages.common import collect_split, load_experiment_model

log = logging.getLogger(__name__)


def _stitch(windows: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _subject_rows(subjects: list[str]) -> dict[str, np.ndarray]:
    """Row indices of each subject's samples, in order of first appearance."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, subject in enumerate(subjects):
        groups[subject].append(i)
    return {s: np.asarray(rows) for s, rows in groups.items()}


def _per_subject(subjects: list[str], values: np.ndarray) -> dict[str, np.ndarray]:
    """Each subject's rows of ``values``."""
    return {s: values[rows] for s, rows in _subject_rows(subjects).items()}


def _condition_features(modality: str, condition: np.ndarray, vocab_size: int | None) -> np.ndarray:
    """Features the ridge baseline sees for each sample's condition."""
    if modality == "text":  # bag of words over the model's vocabulary (pad/bos/eos dropped)
        ids = condition.astype(np.int64)
        counts = np.zeros((len(ids), int(vocab_size)), dtype=np.float32)
        for row, sample in enumerate(ids):
            np.add.at(counts[row], sample[sample > 2], 1.0)
        return counts
    return condition.reshape(len(condition), -1)


def _timeseries_scores(pred: dict, true: dict, subjects: list[str]) -> dict:
    p = np.stack([pred[s] for s in subjects])
    t = np.stack([true[s] for s in subjects])
    return ts_metrics.time_series_metrics(p, t)


def evaluate_experiment(
    model_path: str | Path,
    shard_dir: str | Path,
    experiment: dict,
    settings: dict,
    out_metrics: str | Path,
    out_predictions: str | Path,
    truth_dir: str | Path | None = None,
) -> dict:
    """Score a trained experiment on the test split; write metrics.json and predictions.npz.

    Parameters
    ----------
    model_path : path
        ``models/<experiment>/model.pt`` written by the train stage.
    shard_dir : path
        ``shards/`` with ``manifest.json``.
    experiment : dict
        The experiment's entry in ``config.yaml``.
    settings : dict
        ``config['evaluate']``: ``ridge_alphas``, ``pca_components``.
    truth_dir : path, optional
        ``truth/`` of a synthetic dataset; when it holds ``<subject>.npz`` with
        ``evoked``, the noise ceiling is reported.

    Returns
    -------
    dict
        The metrics record written to ``out_metrics``.
    """
    require_file(model_path, "trained model")
    # One thread for torch and BLAS: float sums then do not depend on the machine's core
    # count, so a cluster node reproduces a workstation's metrics (to the last bit or so).
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        return _evaluate(
            model_path, shard_dir, experiment, settings, out_metrics, out_predictions, truth_dir
        )


def _evaluate(
    model_path, shard_dir, experiment, settings, out_metrics, out_predictions, truth_dir
) -> dict:
    model, tokenizer = load_experiment_model(model_path, experiment.get("plugins"))
    condition, target = experiment["condition"], experiment["target"]
    manifest = read_manifest(shard_dir)
    # left/right-style ROI views: the test pass also averages the attention (homologs below)
    cross_attention = experiment.get("method", "cross_attention") == "cross_attention"
    homologs = condition == target == "time_series" and cross_attention
    regions = manifest.get("sample_unit") == "region" and target == "tabular"
    train = collect_split(shard_dir, "train", experiment, tokenizer)
    test = collect_split(
        shard_dir,
        "test",
        experiment,
        tokenizer,
        model=model,
        attention=homologs or (regions and cross_attention and condition == "tabular"),
    )
    if not test.subjects:
        raise InputError(shard_dir, "the test split has no samples")
    log.info(
        "evaluating %s on %d test samples of %d subjects",
        experiment["name"],
        len(test.subjects),
        len(set(test.subjects)),
    )

    vocab = tokenizer.vocab_size if tokenizer is not None else None
    x_train = _condition_features(condition, train.condition, vocab)
    x_test = _condition_features(condition, test.condition, vocab)
    record = {
        "experiment": experiment["name"],
        "condition": condition,
        "target": target,
        "method": experiment.get("method", "cross_attention"),
        "n_test_subjects": len(set(test.subjects)),
        "scores": {},
        "per_roi": {},
    }
    arrays: dict[str, np.ndarray] = {}
    alphas = np.asarray(settings.get("ridge_alphas", np.logspace(-1, 4, 6)), dtype=float)
    n_components = settings.get("pca_components")

    if target == "time_series":
        by_time = manifest.get("split_by") == "time"
        record["split_by"] = "time" if by_time else "subject"
        _evaluate_time_series(
            record,
            arrays,
            train,
            test,
            x_train,
            x_test,
            condition,
            alphas,
            n_components,
            truth_dir,
            by_time,
        )
        if homologs:
            _homolog_attention(record, test.attention, manifest, experiment)
    elif target == "image":
        _evaluate_image(record, arrays, train, test, x_train, x_test, alphas, n_components)
        channels = experiment.get("target_channels")
        channels = [channels] if isinstance(channels, str) else list(channels or ["T1w"])
        if set(channels) <= set(manifest.get("label_channels", [])):
            _segmentation_scores(record, arrays, train.target)
    elif target == "tabular":
        _evaluate_tabular(record, arrays, train, test, x_train, x_test, alphas, n_components, model)
        if regions:
            _evaluate_region_profiles(record, arrays, test, manifest, experiment, shard_dir)
    elif target == "text":
        _evaluate_text(record, arrays, train, test)
    else:  # pragma: no cover - the schema allows only the four modalities
        raise ValueError(f"unknown target modality {target!r}")

    if not record["per_roi"]:
        del record["per_roi"]
    write_metrics(out_metrics, record)
    with atomic_path(out_predictions) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    log.info("scores: %s", record["scores"])
    return record


def _ridge(x_train, y_train, alphas, n_components, categorical_columns=()):
    n_components = min(n_components or len(x_train), len(x_train) - 1) or None
    return RidgeBaseline(
        alphas=alphas, categorical_columns=categorical_columns, n_components=n_components
    ).fit(x_train, y_train)


def _evaluate_time_series(
    record,
    arrays,
    train,
    test,
    x_train,
    x_test,
    condition,
    alphas,
    n_components,
    truth_dir,
    by_time=False,
):
    test_rows, train_rows = _subject_rows(test.subjects), _subject_rows(train.subjects)
    subjects = sorted(test_rows)
    pred, true, time_index = {}, {}, {}
    for s, rows in test_rows.items():
        pred[s], time_index[s] = _stitch(test.prediction[rows], test.window_start[rows])
        true[s], _ = _stitch(test.target[rows], test.window_start[rows])

    if by_time:  # test volumes lie after every training volume: the mean training window
        group = GroupMeanBaseline("time_series").fit(None, train.target)
        group_windows = group.predict(len(test.subjects))
    else:  # the training subjects' average at the same absolute volumes
        group = GroupMeanBaseline("time_series").fit(
            None, train.target, time_offsets=train.window_start
        )
        group_windows = group.predict(len(test.subjects), time_offsets=test.window_start)
    group_pred = {
        s: _stitch(group_windows[r], test.window_start[r])[0] for s, r in test_rows.items()
    }

    if condition == "time_series":  # same-time map: condition ROIs at t -> target ROIs at t
        n_cond, n_target = train.condition.shape[-1], train.target.shape[-1]
        ridge = _ridge(
            train.condition.reshape(-1, n_cond),
            train.target.reshape(-1, n_target),
            alphas,
            n_components,
        )
        ridge_windows = ridge.predict(test.condition.reshape(-1, n_cond)).reshape(test.target.shape)
        ridge_pred = {
            s: _stitch(ridge_windows[r], test.window_start[r])[0] for s, r in test_rows.items()
        }
    else:  # subject-level condition: one whole run per training subject

        def whole_runs(split, rows_by_subject):
            keys = sorted(rows_by_subject)
            runs = [
                _stitch(split.target[rows_by_subject[k]], split.window_start[rows_by_subject[k]])
                for k in keys
            ]
            length = min(len(r[0]) for r in runs)
            return keys, np.stack([r[0][:length] for r in runs])

        train_keys, y_train = whole_runs(train, train_rows)
        x_tr = np.stack([x_train[train_rows[k][0]] for k in train_keys])
        ridge = _ridge(x_tr, y_train, alphas, n_components)
        x_te = np.stack([x_test[test_rows[s][0]] for s in subjects])
        runs = ridge.predict(x_te)
        ridge_pred = {}
        for s, run in zip(subjects, runs, strict=True):
            n = min(len(run), len(true[s]))
            ridge_pred[s] = run[:n]
        length = min(min(len(v) for v in ridge_pred.values()), min(len(v) for v in true.values()))
        for d in (pred, true, group_pred, ridge_pred, time_index):
            for s in subjects:
                d[s] = d[s][:length]

    scores, per_roi = {}, {}
    for name, predicted in (("model", pred), ("group_mean", group_pred), ("ridge", ridge_pred)):
        result = _timeseries_scores(predicted, true, subjects)
        scores[name], per_roi[name] = result["scores"], result["per_roi"]

    truth = _load_truth(truth_dir, subjects, time_index)
    if truth is not None:
        ceiling = ts_metrics.noise_ceiling_metrics(truth, np.stack([true[s] for s in subjects]))
        scores["noise_ceiling"], per_roi["noise_ceiling"] = ceiling["scores"], ceiling["per_roi"]
        ceiling_r = ceiling["scores"]["pearson_r"]
        if ceiling_r > 0:
            scores["model"]["fraction_of_noise_ceiling"] = scores["model"]["pearson_r"] / ceiling_r
        arrays["truth_evoked"] = truth

    record["scores"], record["per_roi"] = scores, per_roi
    arrays.update(
        subjects=np.asarray(subjects),
        prediction=np.stack([pred[s] for s in subjects]),
        target=np.stack([true[s] for s in subjects]),
        group_mean=np.stack([group_pred[s] for s in subjects]),
        ridge=np.stack([ridge_pred[s] for s in subjects]),
        time_index=time_index[subjects[0]],
    )


def _load_truth(truth_dir, subjects, time_index) -> np.ndarray | None:
    if truth_dir is None or not Path(truth_dir).is_dir():
        return None
    evoked = []
    for s in subjects:
        path = Path(truth_dir) / f"{s}.npz"
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as truth:
            if "evoked" not in truth:
                raise InputError(path, "synthetic truth has no 'evoked' array")
            series = truth["evoked"]
        if series.shape[0] <= time_index[s].max():
            raise InputError(
                path,
                f"evoked truth has {series.shape[0]} time points, "
                f"the shards need {time_index[s].max() + 1}",
            )
        evoked.append(series[time_index[s]])
    return np.stack(evoked).astype(np.float32)


def _subject_mean(values: np.ndarray, subjects: list[str]) -> tuple[list[str], np.ndarray]:
    by_subject = _per_subject(subjects, values)
    keys = sorted(by_subject)
    return keys, np.stack([by_subject[k].mean(axis=0) for k in keys])


def _evaluate_image(record, arrays, train, test, x_train, x_test, alphas, n_components):
    keys, pred = _subject_mean(test.prediction, test.subjects)
    _, true = _subject_mean(test.target, test.subjects)
    data_range = float(np.ptp(train.target)) or 1.0
    group = GroupMeanBaseline("mean").fit(None, train.target)
    group_pred = group.predict(len(keys))
    ridge = _ridge(x_train, train.target, alphas, n_components)
    _, ridge_pred = _subject_mean(ridge.predict(x_test), test.subjects)
    # SSIM's standard 11-voxel window (sigma 1.5), narrowed for images smaller than it
    smallest = min(true.shape[2:])
    sigma = min(1.5, ((smallest - 1) // 2) / 3.5)
    if sigma < 1.5:
        log.info("images of side %d: SSIM with sigma %.3g (window %d)", smallest, sigma, smallest)
        record["ssim_sigma"] = sigma
    record["scores"] = {
        name: modality_metrics.image_metrics(p, true, data_range=data_range, sigma=sigma)["scores"]
        for name, p in (("model", pred), ("group_mean", group_pred), ("ridge", ridge_pred))
    }
    arrays.update(
        subjects=np.asarray(keys),
        prediction=pred,
        target=true,
        group_mean=group_pred,
        ridge=ridge_pred,
    )


def _nearest_label(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
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


def _segmentation_scores(record, arrays, train_target: np.ndarray) -> None:
    """Label-image targets (e.g. BraTS's ``dseg``): predictions are rounded to the nearest
    label value seen in training and scored by Dice, next to the image metrics."""
    labels = np.unique(np.rint(train_target))
    true = np.rint(arrays["target"])
    for name in ("model", "group_mean", "ridge"):
        values = arrays["prediction" if name == "model" else name]
        record["scores"][name].update(dice_scores(_nearest_label(values, labels), true, labels))


def _evaluate_tabular(record, arrays, train, test, x_train, x_test, alphas, n_components, model):
    n_cat = len(model.table_schema("target")[1])
    n_num = train.target.shape[1] - n_cat
    keys, true = _subject_mean(test.target, test.subjects)
    numeric_pred = _per_subject(test.subjects, test.prediction[:, :n_num])
    numeric = np.stack([numeric_pred[k].mean(axis=0) for k in keys])
    categorical = []
    for scores in test.categorical_scores:
        by_subject = _per_subject(test.subjects, scores)
        categorical.append(np.stack([by_subject[k].mean(axis=0) for k in keys]))
    model_codes = (
        np.stack([c.argmax(axis=1) for c in categorical], axis=1)
        if categorical
        else (np.zeros((len(keys), 0)))
    )
    pred = np.concatenate([numeric, model_codes], axis=1)

    group_pred = np.concatenate(
        [GroupMeanBaseline("mean").fit(None, train.target[:, :n_num]).predict(len(keys))]
        + [
            GroupMeanBaseline("majority")
            .fit(None, train.target[:, n_num + j])
            .predict(len(keys))
            .reshape(-1, 1)
            for j in range(n_cat)
        ],
        axis=1,
    )
    ridge = _ridge(x_train, train.target[:, :n_num], alphas, n_components)
    _, ridge_num = _subject_mean(ridge.predict(x_test), test.subjects)
    ridge_pred = np.concatenate([ridge_num, group_pred[:, n_num:]], axis=1)

    def score(p):
        numeric = (p[:, :n_num], true[:, :n_num]) if n_num else (None, None)
        codes = (p[:, n_num:], true[:, n_num:]) if n_cat else (None, None)
        return modality_metrics.tabular_metrics(*numeric, *codes)["scores"]

    record["scores"] = {
        "model": score(pred),
        "group_mean": score(group_pred),
        "ridge": score(ridge_pred),
    }
    arrays.update(
        subjects=np.asarray(keys),
        prediction=pred,
        target=true,
        group_mean=group_pred,
        ridge=ridge_pred,
    )


def _evaluate_text(record, arrays, train, test):
    logits, true = test.prediction, test.target.astype(np.int64)
    # bos at position 0 is given to the decoder, not predicted: neither side is scored on it
    model_scores = modality_metrics.text_metrics(logits, true, bos_id=BOS_ID)["scores"]
    # group "mean" for text: the training corpus's unigram distribution at every position
    counts = np.bincount(train.target.astype(np.int64).ravel(), minlength=logits.shape[-1])
    counts[[PAD_ID, BOS_ID]] = 0
    probs = (counts + 1.0) / (counts + 1.0).sum()
    unigram = np.broadcast_to(np.log(probs), logits.shape)
    record["scores"] = {
        "model": model_scores,
        "group_mean": modality_metrics.text_metrics(unigram, true, bos_id=BOS_ID)["scores"],
    }
    arrays.update(subjects=np.asarray(test.subjects), prediction=logits.argmax(-1), target=true)


def _row_r(pred: np.ndarray, true: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Pearson r of each row of ``pred`` with the same row of ``true`` over the ``keep``
    mask, which keeps as many entries in every row (0 for a constant row)."""
    n = len(pred)
    p, t = pred[keep].reshape(n, -1), true[keep].reshape(n, -1)
    return ts_metrics.pearson_per_roi(p[:, :, None], t[:, :, None])[:, 0]  # rows as series


def _evaluate_region_profiles(record, arrays, test, manifest, experiment, shard_dir) -> None:
    """Region samples (group data): score each held-out region's target PROFILE.

    The target columns ``<prefix>_<region>`` (e.g. ``fc_L_001``) are mapped
    back to the table's units and each test region's predicted row is
    correlated with its true row, leaving out the region's own column (FC with
    itself is 1 by definition):

    - ``pearson_r``: over every other region;
    - ``pearson_r_heldout_columns``: only over the other TEST regions. A test
      region's FC with a training region is also, transposed, a value in that
      training region's own target row; this score never uses such entries;
    - ``pearson_r_holdout_group``: against the same row of the held-out group's
      matrix (``holdout_<prefix>_<region>`` columns, which no model sees).

    ``noise_ceiling`` is the held-out group's row used as the prediction of the
    discovery group's row: how far the profile itself reproduces. With
    cross-attention, ``matched_attention_fraction`` is the fraction of target
    columns whose mean attention peaks on the condition column of the same
    region (``fc_L_001`` -> ``mpc_L_001``).
    """
    from modalmerge.data.shards.regions import region_of_column
    from modalmerge.data.shards.split_arrays import load_split_arrays, table_columns

    columns = list(manifest["tabular"]["columns"])
    mean = np.asarray(manifest["tabular"]["numeric_mean"], dtype=np.float64)
    std = np.asarray(manifest["tabular"]["numeric_std"], dtype=np.float64)

    def view(role: str) -> np.ndarray:
        picked = table_columns(manifest, experiment.get(f"{role}_columns"))
        return np.arange(len(columns)) if picked is None else picked

    picked = view("target")
    names = [columns[i] for i in picked]
    regions = set(manifest.get("roi_names") or [])
    column_region = [(region_of_column(n, regions) or (None, None))[1] for n in names]
    if not all(column_region):
        log.info("target columns are not per-region (<prefix>_<region>): no profile scores")
        return
    prefix = names[0][: -len(column_region[0]) - 1]
    keys = [str(k) for k in arrays["subjects"]]
    held_out = set(keys)

    def raw(values):
        return np.asarray(values, np.float64) * std[picked] + mean[picked]

    true = raw(arrays["target"])
    self_column = np.array([[c == k for c in column_region] for k in keys])
    keep_all = ~self_column
    keep_heldout = keep_all & np.array([c in held_out for c in column_region])[None, :]
    table = load_split_arrays(shard_dir, "test", "tabular")
    row_of = {s: i for i, s in enumerate(table["subject"])}
    holdout_names = [f"holdout_{n}" for n in names]
    holdout = None
    if all(n in columns for n in holdout_names):
        index = [columns.index(n) for n in holdout_names]
        rows = np.asarray(table["data"], np.float64)[[row_of[k] for k in keys]][:, index]
        holdout = rows * std[index] + mean[index]

    per_region: dict = {"regions": keys}
    predictions = {"model": arrays["prediction"], "group_mean": arrays["group_mean"]}
    predictions["ridge"] = arrays["ridge"]
    for name, values in predictions.items():
        pred = raw(values)
        r = _row_r(pred, true, keep_all)
        scores = record["scores"].setdefault(name, {})
        scores["pearson_r"] = float(r.mean())
        if len(held_out) > 2:
            scores["pearson_r_heldout_columns"] = float(_row_r(pred, true, keep_heldout).mean())
        if holdout is not None:
            scores["pearson_r_holdout_group"] = float(_row_r(pred, holdout, keep_all).mean())
        per_region[name] = {"pearson_r": r.round(6).tolist()}
        arrays[f"{name}_raw"] = pred.astype(np.float32)
    arrays["target_raw"] = true.astype(np.float32)
    if holdout is not None:
        ceiling = _row_r(holdout, true, keep_all)
        record["scores"]["noise_ceiling"] = {"pearson_r": float(ceiling.mean())}
        per_region["noise_ceiling"] = {"pearson_r": ceiling.round(6).tolist()}
    record["per_region"] = per_region
    record["profile"] = {"prefix": prefix, "columns": names}
    if test.attention is not None:
        condition_names = [columns[i] for i in view("condition")]
        where = {}
        for j, name in enumerate(condition_names):
            hit = region_of_column(name, regions)
            if hit is not None:
                where.setdefault(hit[1], []).append(j)
        pairs = {i: where[r][0] for i, r in enumerate(column_region) if len(where.get(r, [])) == 1}
        if pairs:
            peaks = test.attention.argmax(axis=1)
            hits = sum(peaks[i] == j for i, j in pairs.items())
            record["scores"]["model"]["matched_attention_fraction"] = hits / len(pairs)
            record["scores"]["model"]["matched_attention_chance"] = 1.0 / test.attention.shape[1]
            record["matched_attention"] = {
                "n_pairs": len(pairs),
                "mean_attention": test.attention.round(6).tolist(),
                "condition_columns": condition_names,
                "target_columns": names,
            }
            log.info("attention peaks on the same region for %d of %d columns", hits, len(pairs))


_HEMI = re.compile(r"(^(l|r|lh|rh|left|right)[_\-. ])|([_\-. ](l|r|lh|rh|left|right)$)", re.I)


def homolog_base(name: str) -> str:
    """An ROI name without its hemisphere tag (``L_insula``, ``insula_rh`` -> ``insula``)."""
    return _HEMI.sub("", str(name)).lower()


def homolog_pairs(target_names: list[str], condition_names: list[str]) -> dict[int, int]:
    """``{target column: condition column}`` of ROIs with the same name but hemisphere."""
    where = {}
    for j, name in enumerate(condition_names):
        where.setdefault(homolog_base(name), []).append(j)
    pairs = {}
    for i, name in enumerate(target_names):
        base = homolog_base(name)
        if base != str(name).lower() and len(where.get(base, [])) == 1:
            pairs[i] = where[base][0]
    return pairs


def _homolog_attention(record, attention: np.ndarray, manifest: dict, experiment) -> None:
    """Score where each target ROI's mean attention peaks against its homolog, if any pair."""
    cond = roi_names(manifest, roi_columns(manifest, experiment.get("condition_rois")))
    target = roi_names(manifest, roi_columns(manifest, experiment.get("target_rois")))
    pairs = homolog_pairs(target, cond)
    if not pairs:
        return
    peaks = attention.argmax(axis=1)
    hits = [i for i, j in pairs.items() if peaks[i] == j]
    record["scores"]["model"]["homolog_attention_fraction"] = len(hits) / len(pairs)
    record["scores"]["model"]["homolog_attention_chance"] = 1.0 / attention.shape[1]
    record["homolog_attention"] = {
        "n_pairs": len(pairs),
        "peaks_on_homolog": [target[i] for i in hits],
        "mean_attention": attention.round(6).tolist(),
        "condition_rois": cond,
        "target_rois": target,
    }
    log.info("attention peaks on the homolog for %d of %d target ROIs", len(hits), len(pairs))
