"""The evaluate stage's part for generative models (``conditioning='diffusion'``).

The model draws ``evaluate.samples`` samples per held-out window (DDIM at the
model's ``sample_steps``, seeded with ``evaluate.sample_seed``); their mean is the
model's prediction, scored like every deterministic prediction (whole runs, against
the baselines), and the samples themselves are scored by
:func:`modalmerge.evaluation.generative.score_samples` (CRPS against the
climatological ensemble, spread–skill, realism ratios, FC of samples); those of a
``volume_series`` target by CRPS per voxel against the climatological ensemble,
spread–skill, realism ratios of 4D windows and diversity, scored subject by subject as
they are drawn (:func:`stream_volume_samples`), so memory does not grow with the split.
The samples are drawn on the job's device (:func:`sampling_device`). The samples of the
first test windows go to ``predictions.npz`` (``samples``, ``sample_subjects``,
``sample_window_start``) for the figures.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from modalmerge.evaluation.generative import mmd, sample_diversity, score_samples
from modalmerge.evaluation.intervals import paired_difference
from modalmerge.evaluation.volume_series import KEPT_WINDOWS as KEPT_VOLUME_WINDOWS
from modalmerge.evaluation.volume_series import (
    VolumeSampleScores,
    brain_mask,
    check_sample_count,
    finish_volume_sample_scores,
    volume_unit_sample_scores,
)
from modalmerge.stages.common import SplitArrays, collect_split
from modalmerge.training.device import resolve_device

log = logging.getLogger(__name__)

#: windows whose samples are kept in predictions.npz for the figures
KEPT_WINDOWS = 8
#: image targets: held-out subjects whose first window's samples are kept (all, up to this)
KEPT_IMAGE_SUBJECTS = 64


def held_out_split(shard_dir, split, experiment, tokenizer, model, attention, settings, train):
    """The held-out split with the model's predictions, and the samples (None for a
    deterministic model); a generative model's prediction is the mean of its samples.
    For a ``volume_series`` target (``train``: the training split), the samples are scored
    subject by subject as they are drawn and what comes back is their scores
    (:class:`~modalmerge.evaluation.volume_series.VolumeSampleScores`): a 4D window's
    samples are the one array of the stage that would otherwise grow with the cohort."""
    if not model.generative:
        test = collect_split(
            shard_dir, split, experiment, tokenizer, model=model, attention=attention
        )
        return test, None
    test = collect_split(shard_dir, split, experiment, tokenizer)
    if not test.subjects:  # the caller names the empty split
        return test, None
    device = sampling_device()
    log.info("drawing %d samples per window on %s", settings.samples, device)
    try:
        model.to(device)
        if experiment.target == "volume_series":
            test.prediction, test.attention, samples = stream_volume_samples(
                model, test, train, settings.samples, settings.sample_seed
            )
            return test, samples
        samples, test.attention = draw_samples(model, test, settings.samples, settings.sample_seed)
    finally:
        model.to("cpu")  # what follows in evaluate reads the model on the CPU
    test.prediction = samples.mean(axis=1)
    return test, samples


def sampling_device() -> torch.device:
    """Where a generative model draws its samples: the job's GPU where there is one (the
    evaluate job of a diffusion experiment with ``gpus`` asks SLURM for one), else the CPU;
    ``MODALMERGE_DEVICE`` overrides (:func:`modalmerge.training.device.resolve_device`)."""
    return resolve_device("auto")


def add_samples(scored, samples, target: str, test, train, tr: float, model=None) -> None:
    """Add the scores of a generative ``model``'s ``samples`` to ``scored``, by target (a
    ``volume_series`` target's come scored, :class:`VolumeSampleScores`),
    and the scales of its residual draws and mean where it calibrated them
    (``calibrate_spread``, ``calibrate_mean``)."""
    if target == "time_series":
        add_sample_scores(scored, samples, test, train, tr)
    elif target == "image":
        add_image_sample_scores(scored, samples, test, train)
    elif target == "volume_series":  # CRPS, spread-skill, realism of 4D windows, diversity
        finish_volume_sample_scores(scored, samples)  # scored as they were drawn
    conditioner = getattr(model, "conditioner", None)
    for buffer, key in (("spread", "spread_scale"), ("mean_scale", "mean_scale")):
        value = getattr(conditioner, buffer, None)  # calibrate_spread's s, calibrate_mean's a
        if value is not None and "generative" in scored.extra:
            scored.extra["generative"][key] = float(value)


def draw_samples(
    model, split: SplitArrays, n_samples: int, seed: int, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray | None]:
    """Samples ``(n, S, *target_shape)`` for every window of ``split`` and the mean
    cross-attention over windows and heads ``(n_queries, n_condition)`` (None without it),
    drawn on the device the model is on and returned as CPU arrays.

    One generator seeded with ``seed`` serves every batch in order, so the samples
    depend on the seed, the batch size and the device only (a GPU's random stream is not
    the CPU's: the same seed gives another, equally valid draw there). The samples are
    held in one array of ``n x S`` windows; :func:`stream_volume_samples` scores 4D
    windows as they come instead.
    """
    out, attention_sum = None, None  # filled in place: no second copy of every sample
    n = len(split.subjects)
    for lo, batch, part in sample_batches(model, split, n_samples, seed, batch_size):
        if out is None:
            out = np.empty((n, *batch.shape[1:]), dtype=np.float32)
        out[lo : lo + len(batch)] = batch
        attention_sum = _add(attention_sum, part)
    return out, None if attention_sum is None else attention_sum / n


def _add(total, part):
    return part if total is None else total if part is None else total + part


@torch.no_grad()
def sample_batches(model, split: SplitArrays, n_samples: int, seed: int, batch_size: int = 16):
    """Yield ``(first row, samples (b, S, *target_shape), attention summed over the batch's
    windows or None)`` batch by batch, in the split's order (:func:`draw_samples`)."""
    if len(split.subjects) == 0:
        raise ValueError("draw_samples: the split has no windows")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(int(seed))
    for lo in range(0, len(split.subjects), batch_size):
        condition = torch.from_numpy(split.condition[lo : lo + batch_size]).to(device)
        offset = torch.from_numpy(split.window_start[lo : lo + batch_size]).long().to(device)
        drawn = model.sample(
            condition, n_samples=n_samples, seed=generator, time_offset=offset,
            return_attention=True,
        )  # fmt: skip
        part = None
        if drawn.attention is not None:
            part = drawn.attention.float().mean(dim=1).sum(dim=0).cpu().numpy()
        yield lo, drawn.samples.float().cpu().numpy(), part


def stream_volume_samples(model, test: SplitArrays, train: SplitArrays, n_samples, seed):
    """Draw the samples of every 4D window of ``test`` as :func:`draw_samples` does (same
    batches, same draws) and score each held-out subject as soon as its windows are drawn
    (:func:`~modalmerge.evaluation.volume_series.volume_unit_sample_scores`), keeping only
    the ensemble means, the first windows' samples and the scores: memory holds a batch and
    the subjects it leaves unfinished, whatever the size of the split. Returns
    (prediction, attention, :class:`~modalmerge.evaluation.volume_series.VolumeSampleScores`)."""
    check_sample_count(n_samples)
    mask = brain_mask(train.target)
    train_target, train_start = np.asarray(train.target), np.asarray(train.window_start)
    subjects, starts = np.asarray(test.subjects), np.asarray(test.window_start)
    left = {u: int((subjects == u).sum()) for u in dict.fromkeys(test.subjects)}
    pending: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {u: [] for u in left}
    prediction = np.empty(np.shape(test.target), dtype=np.float32)
    kept, by_unit, attention_sum = [], {}, None
    for lo, batch, part in sample_batches(model, test, n_samples, seed):
        rows = np.arange(lo, lo + len(batch))
        prediction[rows] = batch.mean(axis=1)
        if lo < KEPT_VOLUME_WINDOWS:  # a copy: a view would keep the whole batch alive
            kept.append(batch[: KEPT_VOLUME_WINDOWS - lo].copy())
        attention_sum = _add(attention_sum, part)
        for u in dict.fromkeys(subjects[rows]):
            mine = subjects[rows] == u
            pending[u].append((rows[mine], batch[mine]))
            left[u] -= int(mine.sum())
            if left[u] == 0:  # every window of u drawn: score it, let its samples go
                parts = pending.pop(u)
                idx = np.concatenate([r for r, _ in parts])
                members = np.concatenate([m for _, m in parts])
                by_unit[u] = volume_unit_sample_scores(
                    members, test.target[idx], starts[idx], train_target, train_start, mask,
                    prediction[idx],
                )  # fmt: skip
    attention = None if attention_sum is None else attention_sum / len(subjects)
    found = VolumeSampleScores(by_unit, n_samples, np.concatenate(kept)[:KEPT_VOLUME_WINDOWS])
    return prediction, attention, found


def add_sample_scores(scored, samples, test: SplitArrays, train: SplitArrays, tr: float) -> None:
    """Score ``samples`` of the test windows and add them to ``scored`` (in place):
    ``model`` and ``climatology`` scores and per-unit values, the group mean's realism
    ratios, the paired CRPS difference, and the kept samples."""
    group = np.stack([_group_window(train, s) for s in test.window_start])
    found = score_samples(
        samples,
        test.target,
        test.subjects,
        test.window_start,
        train.target,
        train.window_start,
        tr,
        deterministic={"group_mean": group},
    )
    per_unit = scored.per_unit
    if per_unit and per_unit.get("units") != found.units:
        raise ValueError("sample scores and whole-run scores disagree on the held-out units")
    for name, metrics in found.per_unit.items():
        per_unit.setdefault(name, {}).update(metrics)
        scored.scores.setdefault(name, {}).update(found.scores[name])
    diff = paired_difference(found.per_unit["climatology"]["crps"], found.per_unit["model"]["crps"])
    scored.extra["generative"] = {
        "samples_per_window": int(samples.shape[1]),
        "crps_estimator": "fair ensemble CRPS (Ferro 2014)",
        "climatology": "training subjects' windows at the same window start",
        "crps_climatology_minus_model": dataclasses.asdict(diff),
    }
    keep = slice(0, KEPT_WINDOWS)
    scored.arrays.update(
        samples=samples[keep].astype(np.float32),
        sample_target=test.target[keep],
        sample_subjects=np.asarray(test.subjects[keep]),
        sample_window_start=test.window_start[keep],
    )


def _group_window(train: SplitArrays, start: int) -> np.ndarray:
    """The mean training window at ``start`` (every training window when none starts there)."""
    at = train.target[train.window_start == start]
    return (at if len(at) else train.target).mean(axis=0)


def add_image_sample_scores(scored, samples, test: SplitArrays, train: SplitArrays) -> None:
    """Image targets: ``sample_diversity`` per held-out window (averaged per subject, in
    ``per_unit`` when the scorer has subject units), and the distance between generated
    and real held-out images (:func:`image_distances`). SSIM/PSNR are the sample mean's
    (the prediction). The samples of the first window of each held-out subject (up to
    ``KEPT_IMAGE_SUBJECTS``) go to ``predictions.npz`` for the figures and for intervals
    of the MMD (``samples``, ``sample_target``, ...)."""
    diversity = np.array(
        [sample_diversity(s, t) for s, t in zip(samples, test.target, strict=True)]
    )
    subjects = np.asarray(test.subjects)
    units = (scored.per_unit or {}).get("units")
    if units and set(units) <= set(subjects.tolist()):
        values = [float(diversity[subjects == u].mean()) for u in units]
        scored.per_unit.setdefault("model", {})["sample_diversity"] = values
    model = scored.scores.setdefault("model", {})
    model["sample_diversity"] = float(diversity.mean())
    predictors = _subject_predictions(scored)
    sample_mean = predictors.pop("model", None)
    found = image_distances(samples, test, train, predictors)
    model.update(found.pop("model"))
    if sample_mean is not None:  # the prediction: the mean of each subject's samples
        model["image_mmd_sample_mean"] = image_distances(
            samples, test, train, {"mean": sample_mean}
        )["predictors"]["mean"]["image_mmd"]
    for name, values in found.pop("predictors").items():
        scored.scores.setdefault(name, {}).update(values)
    scored.extra["image_mmd"] = found
    first = _first_rows(test.subjects)[:KEPT_IMAGE_SUBJECTS]
    scored.arrays.update(
        samples=samples[first].astype(np.float32),
        sample_target=test.target[first],
        sample_subjects=subjects[first],
        sample_window_start=test.window_start[first],
    )


def _first_rows(subjects) -> np.ndarray:
    """The index of each subject's first row, in the order the subjects first appear."""
    _, first = np.unique(np.asarray(subjects), return_index=True)
    return np.sort(first)


def _subject_predictions(scored) -> dict[str, np.ndarray]:
    """The per-subject images of every predictor the image scorer wrote (``prediction``:
    the model's sample mean, as ``model``; ``group_mean``, ridge ...), keyed by their
    score names."""
    arrays = scored.arrays
    n = len(arrays.get("subjects", ()))
    found = {"model": arrays["prediction"]} if "prediction" in arrays else {}
    for name in scored.scores:
        if name != "model" and name in arrays and len(arrays[name]) == n:
            found[name] = arrays[name]
    return found


def image_distances(samples, test: SplitArrays, train: SplitArrays, predictors=None) -> dict:
    """The Gaussian-kernel MMD² between generated and real held-out images, one image per
    subject on both sides, at ONE bandwidth fixed from the real training images.

    The shards repeat a subject's image for each of its windows; duplicates would put
    kernel values of 1 into the within-set terms of the unbiased estimate, so every set
    here holds one image per subject: the real held-out images, the training images
    (the real-vs-real reference), and for the generated side sample ``s`` of each held-out
    subject's first window, for every ``s`` (``image_mmd`` is the mean over the ``S``
    such sets, ``image_mmd_sd`` their SD). The bandwidth is the median pairwise distance
    between training images (the median heuristic on real data only), so the model's
    value, the reference and the deterministic predictors' values share one kernel.
    ``predictors``: per-subject images of deterministic predictors (rows in the order of
    the held-out subjects' first appearance), each scored as ``image_mmd`` too.

    Returns ``{"model": {...}, "predictors": {name: {"image_mmd": v}}, "bandwidth": b,
    "n_generated_per_set": n, "n_real_test": n, "n_real_train": n}``.
    """
    test_rows, train_rows = _first_rows(test.subjects), _first_rows(train.subjects)
    real_test, real_train = test.target[test_rows], train.target[train_rows]
    flat = real_train.reshape(len(real_train), -1).astype(np.float64)
    sq = (flat**2).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None] - 2 * flat @ flat.T, 0)
    bandwidth = float(np.sqrt(np.median(d2[np.triu_indices(len(flat), 1)]))) or 1.0
    drawn = samples[test_rows]  # (subjects, S, ...)
    per_set = [mmd(drawn[:, s], real_test, bandwidth) for s in range(drawn.shape[1])]
    model = {
        "image_mmd": float(np.mean(per_set)),
        "image_mmd_sd": float(np.std(per_set)),
        "image_mmd_reference": mmd(real_train, real_test, bandwidth),
    }
    others = {
        name: {"image_mmd": mmd(np.asarray(images), real_test, bandwidth)}
        for name, images in (predictors or {}).items()
    }
    return {
        "model": model,
        "predictors": others,
        "bandwidth": bandwidth,
        "bandwidth_rule": "median pairwise distance between the real training images",
        "n_generated_per_set": len(test_rows),
        "n_sets": int(drawn.shape[1]),
        "n_real_test": len(test_rows),
        "n_real_train": len(train_rows),
    }
