"""Scores of a generative model's samples (``conditioning='diffusion'``), time-series targets.

For each held-out window the model draws S samples ``(S, T, R)``. Scored per window,
then averaged per held-out subject (the unit of the intervals):

- ``crps``: the continuous ranked probability score per ROI and volume, by the *fair*
  ensemble estimator (Ferro 2014)
  ``CRPS = mean_i |X_i - y| - 1 / (2 S (S - 1)) sum_{i,j} |X_i - X_j|``, unbiased for
  the CRPS of the distribution the members are drawn from whatever S, so ensembles
  of different sizes (the model's S, the climatology's) compare fairly; lower is better.
- ``crps_climatology``: the same score of the climatological ensemble: the
  training subjects' windows at the same window start (the task paradigm is shared,
  so this ensemble holds the group's evoked response and its spread between subjects).
- ``spread_skill``: ``sqrt((S + 1) / S) * spread / RMSE`` with ``spread`` the root mean
  ensemble variance (unbiased, over members) and RMSE that of the ensemble mean; the
  ``(S + 1) / S`` factor makes a calibrated finite ensemble score 1 (Fortin et al. 2014).
- realism, as ratios (predictor / truth) of four statistics of each window, each a mean
  over ROIs (or ROI pairs) then over windows: ``lag1_autocorrelation``;
  ``spectral_slope``, the slope of log10 power on log10 frequency over 0.01–0.25 Hz
  (periodogram of each ROI's demeaned window); ``low_frequency_share``, the power in
  0.01–0.1 Hz over that in 0.01–0.25 Hz; ``inter_roi_correlation``, the mean of the
  window's off-diagonal ROI correlations. The same ratios are given for deterministic
  predictions (:func:`realism_ratios`), which are smoother than the truth. Per held-out
  subject ``per_unit`` holds the ratio and its two parts, the predictor's statistic
  (``realism_<statistic>``) and the truth's (``realism_truth_<statistic>``); the score over
  subjects (``scores``) is the **ratio of the means** of the parts (:func:`unit_scores`),
  not the mean of the subjects' ratios: a subject whose true mean inter-ROI correlation is
  near zero (0.017 and 0.045 among one cohort's validation subjects) turns a few
  hundredths of difference into a ratio of ±2 or more, and the mean over 9 subjects
  carries it, while the ratio of means weighs each subject by its own statistic and stays
  defined as long as the cohort's is. Its interval resamples subjects and recomputes the
  ratio (:func:`modalmerge.evaluation.intervals.ratio_of_means_ci`).
- FC of samples: each sample index's windows of a subject, concatenated, give one
  sample run; its FC (upper triangle) against the subject's true FC
  (``fc_sample_true``) and against the training subjects' average FC
  (``fc_sample_group``); identifiability top-1 of the sample FC among the held-out
  subjects (``sample_fc_top1``, :func:`modalmerge.evaluation.identifiability.identifiability`).

Why numpy and not a package: ``properscoring`` (the usual CRPS package) is not a
dependency here and its ensemble CRPS is the biased ("plug-in") estimator; the fair
estimator above is three lines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.signal import periodogram

from modalmerge.evaluation.identifiability import fc_triangles, identifiability

REALISM_STATISTICS = (
    "lag1_autocorrelation",
    "spectral_slope",
    "low_frequency_share",
    "inter_roi_correlation",
)
#: frequency bands (Hz) of the spectral statistics
SLOPE_BAND = (0.01, 0.25)
LOW_BAND = (0.01, 0.1)


def crps_ensemble(members: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Fair ensemble CRPS of ``members`` ``(S, ...)`` for ``truth`` ``(...)``, elementwise.

    Raises ValueError for fewer than 2 members (the fair estimator needs pairs).
    """
    members = np.asarray(members, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    s = members.shape[0]
    if s < 2:
        raise ValueError(f"the ensemble CRPS needs at least 2 members, got {s}")
    if members.shape[1:] != truth.shape:
        raise ValueError(f"members {members.shape[1:]} and truth {truth.shape} differ in shape")
    skill = np.abs(members - truth).mean(axis=0)
    # sum_{i,j} |X_i - X_j| from the sorted members: 2 sum_k (2k - S - 1) X_(k), k = 1..S
    ordered = np.sort(members, axis=0)
    weights = (2 * np.arange(1, s + 1) - s - 1).reshape((s,) + (1,) * truth.ndim)
    pair_sum = 2 * (weights * ordered).sum(axis=0)
    return skill - pair_sum / (2 * s * (s - 1))


def spread_skill(members: np.ndarray, truth: np.ndarray) -> float:
    """``sqrt((S + 1) / S) * sqrt(mean variance) / RMSE(ensemble mean)``; 1 when calibrated."""
    members = np.asarray(members, dtype=np.float64)
    s = members.shape[0]
    spread = np.sqrt(members.var(axis=0, ddof=1).mean())
    rmse = np.sqrt(((members.mean(axis=0) - truth) ** 2).mean())
    return float(np.sqrt((s + 1) / s) * spread / rmse) if rmse > 0 else float("inf")


def realism_statistics(windows: np.ndarray, tr: float) -> dict[str, float]:
    """The four realism statistics of windows ``(n, T, R)``, each averaged over windows."""
    x = np.asarray(windows, dtype=np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1)
    a, b = x[:, 1:], x[:, :-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        lag1 = (a * b).mean(axis=1) / (a.std(axis=1) * b.std(axis=1))
    freqs, power = periodogram(x, fs=1.0 / tr, axis=1, detrend=False)  # (n, F, R)
    band = (freqs >= SLOPE_BAND[0] - 1e-9) & (freqs <= SLOPE_BAND[1] + 1e-9)
    low = (freqs >= LOW_BAND[0] - 1e-9) & (freqs <= LOW_BAND[1] + 1e-9)
    p = power[:, band]  # (n, F_band, R)
    logf = np.log10(freqs[band])
    logp = np.log10(np.maximum(p, 1e-12))
    centred = logf - logf.mean()
    slope = (centred[None, :, None] * (logp - logp.mean(axis=1, keepdims=True))).sum(axis=1)
    slope = slope / (centred**2).sum()
    share = power[:, low].sum(axis=1) / np.maximum(p.sum(axis=1), 1e-12)
    z = x / np.where(sd > 0, sd, 1.0)[:, None, :]
    corr = np.einsum("ntr,nts->nrs", z, z) / x.shape[1]
    r = corr.shape[-1]
    off = ~np.eye(r, dtype=bool)
    inter = corr[:, off].mean(axis=1)
    return {
        "lag1_autocorrelation": float(np.nanmean(lag1)),
        "spectral_slope": float(slope.mean()),
        "low_frequency_share": float(share.mean()),
        "inter_roi_correlation": float(inter.mean()),
    }


def realism_ratios(predicted: np.ndarray, truth: np.ndarray, tr: float) -> dict[str, float]:
    """``realism_ratio_<statistic>``: each statistic of ``predicted`` over that of ``truth``."""
    found = realism_entries(predicted, realism_statistics(truth, tr), tr)
    return {key: value for key, value in found.items() if key.startswith("realism_ratio_")}


def realism_parts(key: str, per_unit: Mapping[str, list]) -> tuple[str, str] | None:
    """The per-unit keys ``(predictor's statistic, truth's statistic)`` of a realism ratio
    ``[<prefix>]realism_ratio_<statistic>``, when ``per_unit`` holds both; else None."""
    found = re.fullmatch(r"(.*)realism_ratio_(\w+)", key)
    if found is None:
        return None
    prefix, statistic = found.groups()
    mine, truth = f"{prefix}realism_{statistic}", f"{prefix}realism_truth_{statistic}"
    truth = truth if truth in per_unit else f"realism_truth_{statistic}"
    return (mine, truth) if mine in per_unit and truth in per_unit else None


def unit_scores(per_unit: Mapping[str, list]) -> dict[str, float]:
    """Each per-unit score's mean over units, except a realism ratio with its parts: the
    ratio of the parts' means (module docstring)."""
    scores = {key: float(np.mean(values)) for key, values in per_unit.items()}
    for key in per_unit:
        parts = realism_parts(key, per_unit)
        if parts is not None:
            scores[key] = _ratio(scores[parts[0]], scores[parts[1]])
    return scores


def realism_entries(predicted: np.ndarray, true: Mapping[str, float], tr: float,
                    prefix: str = "") -> dict[str, float]:  # fmt: skip
    """One unit's ``<prefix>realism_ratio_<statistic>`` and ``<prefix>realism_<statistic>``
    of ``predicted`` windows, against the truth's statistics ``true``."""
    mine = realism_statistics(predicted, tr)
    out = {f"{prefix}realism_ratio_{k}": _ratio(mine[k], true[k]) for k in REALISM_STATISTICS}
    out.update({f"{prefix}realism_{k}": mine[k] for k in REALISM_STATISTICS})
    return out


def _ratio(a: float, b: float) -> float:
    """``a / b``; 1 when both are 0 (or undefined: constant windows), inf when only b is."""
    a, b = (0.0 if not np.isfinite(v) else v for v in (a, b))
    if b == 0:
        return 1.0 if a == 0 else float("inf")
    return a / b


@dataclass
class SampleScores:
    """Per-unit (held-out subject) scores of samples, and the arrays the figures draw."""

    units: list[str]
    per_unit: dict[str, dict[str, list[float]]]  # predictor -> metric -> one value per unit
    scores: dict[str, dict[str, float]]  # predictor -> metric -> mean over units


def climatology_members(
    train_target: np.ndarray, train_start: np.ndarray, start: int, max_members: int | None = None
) -> np.ndarray:
    """The training windows starting at ``start`` (all of them when none does)."""
    at = train_target[train_start == start]
    at = at if len(at) >= 2 else train_target
    return at if max_members is None else at[:max_members]


def score_samples(
    samples: np.ndarray,
    truth: np.ndarray,
    subjects: list[str],
    window_start: np.ndarray,
    train_target: np.ndarray,
    train_start: np.ndarray,
    tr: float,
    deterministic: dict[str, np.ndarray] | None = None,
) -> SampleScores:
    """Score ``samples`` ``(n, S, T, R)`` of the held-out windows ``truth`` ``(n, T, R)``.

    ``deterministic`` maps a predictor name (``model`` is the samples' ensemble mean,
    scored separately as ``ensemble_mean_realism_ratio_*``) to window predictions
    ``(n, T, R)`` whose realism ratios are reported too. Returns per-unit scores for
    ``model`` (the samples) and ``climatology``, and each deterministic predictor's
    ratios, with their means over units (realism ratios: ratios of means, :func:`unit_scores`).
    """
    # Over 60 lines: one pass over the held-out subjects gathers every score of the contract.
    samples = np.asarray(samples, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if (
        samples.ndim != 4
        or samples.shape[0] != truth.shape[0]
        or samples.shape[2:] != truth.shape[1:]
    ):
        raise ValueError(
            f"samples {samples.shape} do not match windows {truth.shape} as (n, S, T, R)"
        )
    units = sorted(set(subjects))
    rows = {u: np.flatnonzero(np.asarray(subjects) == u) for u in units}
    crps_w = crps_ensemble(np.moveaxis(samples, 1, 0), truth).mean(axis=(1, 2))  # per window
    clim_w = np.array(
        [
            crps_ensemble(climatology_members(train_target, train_start, s), y).mean()
            for s, y in zip(window_start, truth, strict=True)
        ]
    )
    group_fc = fc_triangles(np.asarray(train_target)).mean(axis=0)  # mean training-window FC
    model: dict[str, list[float]] = {"crps": [], "crps_climatology": [], "spread_skill": []}
    model.update(fc_sample_true=[], fc_sample_group=[], fc_true_group=[])
    others: dict[str, dict[str, list[float]]] = {name: {} for name in deterministic or {}}
    sample_fc, true_fc = [], []
    for u in units:
        idx = rows[u]
        mine, true = samples[idx], truth[idx]  # (k, S, T, R), (k, T, R)
        model["crps"].append(float(crps_w[idx].mean()))
        model["crps_climatology"].append(float(clim_w[idx].mean()))
        model["spread_skill"].append(spread_skill(np.moveaxis(mine, 1, 0), true))
        truth_stats = realism_statistics(true, tr)
        entries = realism_entries(mine.reshape(-1, *mine.shape[2:]), truth_stats, tr)
        entries.update(realism_entries(mine.mean(axis=1), truth_stats, tr, "ensemble_mean_"))
        entries.update({f"realism_truth_{k}": v for k, v in truth_stats.items()})
        for name, predicted in (deterministic or {}).items():
            found = realism_entries(np.asarray(predicted)[idx], truth_stats, tr)
            found.update({f"realism_truth_{k}": v for k, v in truth_stats.items()})
            for key, value in found.items():
                others[name].setdefault(key, []).append(value)
        for key, value in entries.items():  # every sample window, then the ensemble mean
            model.setdefault(key, []).append(value)
        k, n_samples, t, r = mine.shape
        runs = mine.transpose(1, 0, 2, 3).reshape(n_samples, k * t, r)  # one run per sample
        fc_s = fc_triangles(runs)  # (S, E)
        fc_t = fc_triangles(true.reshape(1, -1, true.shape[-1]))[0]
        model["fc_sample_true"].append(float(np.mean([_r(f, fc_t) for f in fc_s])))
        model["fc_sample_group"].append(float(np.mean([_r(f, group_fc) for f in fc_s])))
        model["fc_true_group"].append(_r(fc_t, group_fc))
        sample_fc.append(fc_s.mean(axis=0))
        true_fc.append(fc_t)
    if len(units) >= 2:
        found = identifiability(np.stack(sample_fc), np.stack(true_fc), group_fc)
        model["sample_fc_top1"] = found["fc_top1"].tolist()
    per_unit = {"model": model, "climatology": {"crps": list(model["crps_climatology"])}}
    per_unit.update(others)
    scores = {name: unit_scores(m) for name, m in per_unit.items()}
    return SampleScores(units=units, per_unit=per_unit, scores=scores)


def _r(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two FC triangles; 0 when either is constant (as the metrics score it)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


# ------------------------------------------------------------------ image targets
def sample_diversity(samples: np.ndarray, truth: np.ndarray) -> float:
    """Mean RMS difference between pairs of samples ``(S, ...)``, over the truth's RMS
    about its mean: 0 when every sample is the same image, ~sqrt(2) for independent
    draws as variable as the image itself."""
    x = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    s = len(x)
    sq = (x**2).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None] - 2 * x @ x.T, 0) / x.shape[1]
    pairs = np.sqrt(d2[~np.eye(s, dtype=bool)]).mean() if s > 1 else 0.0
    scale = np.asarray(truth, dtype=np.float64).std()
    return float(pairs / scale) if scale > 0 else float(pairs)


def mmd(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased squared maximum mean discrepancy between image sets ``x`` (n, ...) and
    ``y`` (m, ...) with a Gaussian kernel on voxel intensities.

    Why this distance: it needs no pretrained feature network (FID's Inception weights
    cannot be downloaded here and were trained on photographs, not brain volumes); with a
    Gaussian kernel MMD is 0 only when the two distributions are equal, and its unbiased
    estimate is ~0 (it can be slightly negative) for two samples of one distribution.
    ``bandwidth`` defaults to the median pairwise distance of the pooled sets.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("MMD needs at least 2 images in each set")
    z = np.concatenate([x, y])
    sq = (z**2).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None] - 2 * z @ z.T, 0)
    if bandwidth is None:
        bandwidth = float(np.sqrt(np.median(d2[np.triu_indices(len(z), 1)]))) or 1.0
    k = np.exp(-d2 / (2 * bandwidth**2))
    n, m = len(x), len(y)
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    within = (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (
        m * (m - 1)
    )
    return float(within - 2 * kxy.mean())
