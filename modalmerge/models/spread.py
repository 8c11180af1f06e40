"""Spread calibration of a residual diffusion model's draws on validation data
(``calibrate_spread``).

A residual diffusion model (``residual: true``) draws ``mu(c) + r``: the mean head's
prediction plus a residual from the denoiser. The denoiser learns the residuals of the
*training* subjects, and a mean head fitted to those subjects leaves smaller residuals
on them than on subjects it has not seen, so the draws come out narrower than the
held-out error (spread–skill below 1; docs/benchmarks.md, "Where the CRPS is lost").
Calibration fixes this with one number chosen on the validation split, as post-hoc
variance scaling of ensemble forecasts does: draws become ``mu(c) + s r``, with the
``s`` that minimises the validation subjects' mean fair CRPS.

``calibrate_mean`` chooses a second number ``a`` for the mean head at the same time: draws
become ``a mu(c) + s r``. The mean head overfits its training subjects too, so its
held-out predictions come out larger than the conditional mean they estimate (on three
spent cohorts' validation subjects, the least-squares slope of the truth on the
prediction was 0.77–0.90; docs/benchmarks.md), and a shrunk mean scores lower errors.
``a = 0`` leaves an ensemble of residual draws around zero, so the calibration can fall
back towards an unconditional ensemble when the mean head tells nothing.

Why by hand: the optimum is one convex, one-dimensional problem over draws the model
makes itself, and no library scores a scaled ensemble without re-sorting it per
candidate. Here the members are sorted once: ``s > 0`` keeps their order, so the
pairwise term of the fair CRPS is ``s`` times that of the residuals alone, and only the
``|mu + s r - y|`` term is recomputed per candidate (SciPy's bounded scalar minimiser
picks the candidates). With ``a`` the CRPS stays jointly convex in ``(a, s)`` (a sum of
absolute values of affine functions, minus a linear term), so minimising over ``s`` for
each ``a`` leaves a convex profile in ``a``, and two nested bounded scalar searches find
the joint optimum.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from modalmerge.evaluation.generative import spread_skill
from modalmerge.models.generative import mean_prediction

log = logging.getLogger(__name__)

__all__ = ["SpreadCalibration", "ScaledResiduals", "calibrate_spread", "fit_spread"]

#: the range searched for the scale (a factor outside it means something else is wrong)
SCALE_BOUNDS = (0.25, 4.0)
#: the range searched for the mean's scale (``calibrate_mean``): from no mean at all to a
#: mean head that predicts held-out subjects with half their amplitude
MEAN_SCALE_BOUNDS = (0.0, 2.0)


@dataclass(frozen=True)
class SpreadCalibration:
    """The chosen scale and the validation scores it was chosen on."""

    scale: float
    crps_before: float  # mean fair CRPS of the validation subjects at scale 1
    crps_after: float  # ... at the chosen scale
    spread_skill_before: float
    spread_skill_after: float
    n_windows: int
    n_subjects: int
    n_samples: int
    mean_scale: float = 1.0  # ``a`` (``calibrate_mean``; 1 without it)


class ScaledResiduals:
    """The fair CRPS of ``a * mean + s * residuals`` for ``truth``, for any ``s > 0`` and
    ``a >= 0``, per subject.

    ``mean`` and ``truth`` ``(n, ...)``; ``residuals`` ``(n, S, ...)`` (S >= 2 draws per
    window); ``subjects``: each window's subject. Scores average over the elements of a
    window, then over a subject's windows, then over subjects (as the evaluate stage's
    per-subject scores do).
    """

    def __init__(self, mean, residuals, truth, subjects):
        mean, truth = np.asarray(mean, np.float64), np.asarray(truth, np.float64)
        residuals = np.asarray(residuals, np.float64)
        if residuals.ndim < 2 or residuals.shape[1] < 2:
            raise ValueError(f"residuals must be (n, S >= 2, ...), got {residuals.shape}")
        if mean.shape != truth.shape or residuals.shape[:1] + residuals.shape[2:] != truth.shape:
            raise ValueError(
                f"mean {mean.shape}, residuals {residuals.shape} and truth {truth.shape} differ"
            )
        if len(subjects) != len(truth):
            raise ValueError(f"{len(subjects)} subjects for {len(truth)} windows")
        for name, array in (("mean", mean), ("residuals", residuals), ("truth", truth)):
            if not np.isfinite(array).all():
                raise ValueError(f"the {name} hold NaN or infinite values")
        s = residuals.shape[1]
        self.mean, self.truth = mean[:, None], truth[:, None]
        self.error = self._error(1.0)  # y - mu: |mu + s r - y| = |s r - (y - mu)|
        self.residuals = residuals
        ordered = np.sort(residuals, axis=1)
        weights = (2 * np.arange(1, s + 1) - s - 1).reshape((1, s) + (1,) * (truth.ndim - 1))
        pair = (weights * ordered).sum(axis=1) / (s * (s - 1))  # E|R - R'| / 2, elementwise
        self.pair = self._per_window(pair)
        self.n_samples = s
        codes, self.subject_index = np.unique(np.asarray(subjects), return_inverse=True)
        self.n_subjects = len(codes)

    def _error(self, mean_scale: float) -> np.ndarray:
        """``y - a mu``, ``(n, 1, ...)``."""
        return self.truth - mean_scale * self.mean

    @staticmethod
    def _per_window(x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1).mean(axis=1)

    def _per_subject_mean(self, per_window: np.ndarray) -> float:
        sums = np.bincount(self.subject_index, weights=per_window, minlength=self.n_subjects)
        counts = np.bincount(self.subject_index, minlength=self.n_subjects)
        return float((sums / counts).mean())

    def crps(self, scale: float, mean_scale: float = 1.0) -> float:
        """Mean fair CRPS over subjects of the draws ``mean_scale * mu + scale * r``."""
        error = self.error if mean_scale == 1.0 else self._error(mean_scale)
        skill = self._per_window(np.abs(scale * self.residuals - error).mean(axis=1))
        return self._per_subject_mean(skill - scale * self.pair)

    def spread_skill(self, scale: float, mean_scale: float = 1.0) -> float:
        """The evaluate stage's spread–skill of the scaled draws over all windows (it does
        not change when draws and truth shift by ``a mu``, so it is taken on ``s r`` and
        ``y - a mu``)."""
        error = self._error(mean_scale)[:, 0]
        return spread_skill(np.moveaxis(scale * self.residuals, 1, 0), error)

    def best_scale(
        self, bounds: tuple[float, float] = SCALE_BOUNDS, mean_scale: float = 1.0
    ) -> float:
        """The scale in ``bounds`` with the lowest mean CRPS at ``mean_scale`` (it is convex
        in the scale)."""
        from scipy.optimize import minimize_scalar

        found = minimize_scalar(lambda x: self.crps(x, mean_scale), bounds=bounds,
                                method="bounded", options={"xatol": 1e-4})  # fmt: skip
        return float(found.x)

    def best_scales(
        self,
        bounds: tuple[float, float] = SCALE_BOUNDS,
        mean_bounds: tuple[float, float] = MEAN_SCALE_BOUNDS,
    ) -> tuple[float, float]:
        """``(s, a)`` with the lowest mean CRPS, ``s`` in ``bounds`` and ``a`` in
        ``mean_bounds``: for each candidate ``a`` the best ``s``, and over ``a`` the best of
        that convex profile."""
        from scipy.optimize import minimize_scalar

        def profile(a: float) -> float:
            return self.crps(self.best_scale(bounds, a), a)

        found = minimize_scalar(profile, bounds=mean_bounds, method="bounded",
                                options={"xatol": 1e-3})  # fmt: skip
        mean_scale = float(found.x)
        return self.best_scale(bounds, mean_scale), mean_scale


@torch.no_grad()
def calibrate_spread(
    model, batches: Iterable[dict], n_samples: int = 16, seed: int = 0
) -> SpreadCalibration:
    """Choose and set ``model``'s spread (a residual diffusion model built with
    ``calibrate_spread``) on ``batches`` of the validation split, which must carry
    ``condition``, ``target``, ``time_offset`` and ``subject``. Draws ``n_samples``
    residuals per window at the model's own sampling settings, seeded with ``seed``."""
    conditioner = model.conditioner
    if not getattr(conditioner, "calibrate_spread", False):
        raise ValueError("calibrate_spread needs a diffusion model built with calibrate_spread")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(int(seed))
    means, residuals, truths, subjects = [], [], [], []
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            condition = batch["condition"].to(device)
            tokens, mask = model.encode(condition)
            offset = batch.get("time_offset")
            offset = None if offset is None else offset.to(device)
            drawn = conditioner.sample(
                model.decoder, tokens, mask, model.target_shape, n_samples,
                generator=generator, time_offset=offset,
            )  # fmt: skip
            mean = mean_prediction(model, tokens, mask, offset, condition)
            means.append(mean.float().cpu().numpy())
            residuals.append(drawn.samples.float().cpu().numpy())
            truths.append(batch["target"].float().numpy())
            subjects.extend(batch["subject"])
    finally:
        model.train(was_training)
    if not truths:
        raise ValueError(
            "calibrate_spread needs validation windows, and the validation split has none "
            "(set split fractions that leave validation subjects)"
        )
    scored = ScaledResiduals(
        np.concatenate(means), np.concatenate(residuals), np.concatenate(truths), subjects
    )
    scale, mean_scale = _choose(conditioner, scored)
    found = SpreadCalibration(
        scale=scale,
        crps_before=scored.crps(1.0),
        crps_after=scored.crps(scale, mean_scale),
        spread_skill_before=scored.spread_skill(1.0),
        spread_skill_after=scored.spread_skill(scale, mean_scale),
        n_windows=len(subjects),
        n_subjects=scored.n_subjects,
        n_samples=n_samples,
        mean_scale=mean_scale,
    )
    _report(found)
    return found


def _choose(conditioner, scored: ScaledResiduals) -> tuple[float, float]:
    """The calibrated ``(s, a)``, written into ``conditioner``'s buffers (``a`` = 1 and
    left alone without ``calibrate_mean``)."""
    if getattr(conditioner, "calibrate_mean", False):
        scale, mean_scale = scored.best_scales()
        conditioner.mean_scale.fill_(mean_scale)
    else:
        scale, mean_scale = scored.best_scale(), 1.0
    conditioner.spread.fill_(scale)
    return scale, mean_scale


def _report(found: SpreadCalibration) -> None:
    """Log the calibration, and warn when a scale sits at the edge of its range."""
    log.info(
        "spread calibrated on %d validation windows of %d subjects (%d draws each): scale "
        "%.3f, mean scale %.3f; validation CRPS %.4f -> %.4f, spread-skill %.3f -> %.3f",
        found.n_windows, found.n_subjects, found.n_samples, found.scale, found.mean_scale,
        found.crps_before, found.crps_after, found.spread_skill_before,
        found.spread_skill_after,
    )  # fmt: skip
    edges = ((found.scale, SCALE_BOUNDS, "spread scale"),
             (found.mean_scale, MEAN_SCALE_BOUNDS, "mean scale"))  # fmt: skip
    for value, bounds, what in edges:  # (an uncalibrated a = 1 is at neither edge)
        if abs(value - bounds[0]) < 1e-3 or abs(value - bounds[1]) < 1e-3:
            log.warning(
                "%s %.3f is at the edge of the searched range %s: the draws are far from the "
                "validation error; check the model before trusting its samples",
                what, value, bounds,
            )  # fmt: skip


def fit_spread(model, batches: Iterable[dict], n_samples: int = 16, seed: int = 0):
    """:func:`calibrate_spread` when ``model`` asks for it, else None (the train stage's hook)."""
    if not getattr(getattr(model, "conditioner", None), "calibrate_spread", False):
        return None
    return calibrate_spread(model, batches, n_samples, seed)
