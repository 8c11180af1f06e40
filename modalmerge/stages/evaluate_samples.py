"""The evaluate stage's part for generative models (``conditioning='diffusion'``).

The model draws ``evaluate.samples`` samples per held-out window (DDIM at the
model's ``sample_steps``, seeded with ``evaluate.sample_seed``); their mean is the
model's prediction, scored like every deterministic prediction (whole runs, against
the baselines), and the samples themselves are scored by
:func:`modalmerge.evaluation.generative.score_samples` (CRPS against the
climatological ensemble, spread–skill, realism ratios, FC of samples); those of a
``volume_series`` target by CRPS per voxel against the climatological ensemble,
spread–skill, realism ratios of 4D windows and diversity
(:func:`modalmerge.evaluation.volume_series.add_volume_sample_scores`). The samples
of the first test windows go to ``predictions.npz`` (``samples``,
``sample_subjects``, ``sample_window_start``) for the figures.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from modalmerge.evaluation.generative import mmd, sample_diversity, score_samples
from modalmerge.evaluation.intervals import paired_difference
from modalmerge.evaluation.volume_series import add_volume_sample_scores
from modalmerge.stages.common import SplitArrays, collect_split

log = logging.getLogger(__name__)

#: windows whose samples are kept in predictions.npz for the figures
KEPT_WINDOWS = 8


def held_out_split(shard_dir, split, experiment, tokenizer, model, attention, settings):
    """The held-out split with the model's predictions, and the samples (None for a
    deterministic model); a generative model's prediction is the mean of its samples."""
    if not model.generative:
        test = collect_split(
            shard_dir, split, experiment, tokenizer, model=model, attention=attention
        )
        return test, None
    test = collect_split(shard_dir, split, experiment, tokenizer)
    samples, test.attention = draw_samples(model, test, settings.samples, settings.sample_seed)
    test.prediction = samples.mean(axis=1)
    return test, samples


def add_samples(scored, samples, target: str, test, train, tr: float) -> None:
    """Add the scores of a generative model's ``samples`` to ``scored``, by target."""
    if target == "time_series":
        add_sample_scores(scored, samples, test, train, tr)
    elif target == "image":
        add_image_sample_scores(scored, samples, test, train)
    elif target == "volume_series":  # CRPS, spread-skill, realism of 4D windows, diversity
        add_volume_sample_scores(scored, samples, test, train)


@torch.no_grad()
def draw_samples(
    model, split: SplitArrays, n_samples: int, seed: int, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray | None]:
    """Samples ``(n, S, *target_shape)`` for every window of ``split`` and the mean
    cross-attention over windows and heads ``(n_queries, n_condition)`` (None without it).

    One generator seeded with ``seed`` serves every batch in order, so the samples
    depend on the seed and the batch size only.
    """
    generator = torch.Generator().manual_seed(int(seed))
    out, attention_sum = [], None
    for lo in range(0, len(split.subjects), batch_size):
        condition = torch.from_numpy(split.condition[lo : lo + batch_size])
        offset = torch.from_numpy(split.window_start[lo : lo + batch_size]).long()
        drawn = model.sample(
            condition, n_samples=n_samples, seed=generator, time_offset=offset,
            return_attention=True,
        )  # fmt: skip
        out.append(drawn.samples.float().numpy())
        if drawn.attention is not None:
            part = drawn.attention.float().mean(dim=1).sum(dim=0).numpy()
            attention_sum = part if attention_sum is None else attention_sum + part
    attention = None if attention_sum is None else attention_sum / len(split.subjects)
    return np.concatenate(out), attention


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
    ``per_unit`` when the scorer has subject units) and ``image_mmd``, the unbiased MMD²
    between one sample per held-out window and the real held-out images, beside
    ``image_mmd_reference``, the same between the training and the held-out images (what
    two sets of real images give). SSIM/PSNR are the sample mean's (the prediction)."""
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
    model["image_mmd"] = mmd(samples[:, 0], test.target)
    model["image_mmd_reference"] = mmd(train.target, test.target)
