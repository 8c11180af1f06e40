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

Why by hand: the optimum is one convex, one-dimensional problem over draws the model
makes itself, and no library scores a scaled ensemble without re-sorting it per
candidate. Here the members are sorted once: ``s > 0`` keeps their order, so the
pairwise term of the fair CRPS is ``s`` times that of the residuals alone, and only the
``|mu + s r - y|`` term is recomputed per candidate (SciPy's bounded scalar minimiser
picks the candidates).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from modalmerge.evaluation.generative import spread_skill

log = logging.getLogger(__name__)

__all__ = ["SpreadCalibration", "ScaledResiduals", "calibrate_spread", "fit_spread"]

#: the range searched for the scale (a factor outside it means something else is wrong)
SCALE_BOUNDS = (0.25, 4.0)


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


class ScaledResiduals:
    """The fair CRPS of ``mean + s * residuals`` for ``truth``, for any ``s > 0``, per subject.

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
        self.error = (truth - mean)[:, None]  # y - mu: |mu + s r - y| = |s r - (y - mu)|
        self.residuals = residuals
        ordered = np.sort(residuals, axis=1)
        weights = (2 * np.arange(1, s + 1) - s - 1).reshape((1, s) + (1,) * (truth.ndim - 1))
        pair = (weights * ordered).sum(axis=1) / (s * (s - 1))  # E|R - R'| / 2, elementwise
        self.pair = self._per_window(pair)
        self.n_samples = s
        codes, self.subject_index = np.unique(np.asarray(subjects), return_inverse=True)
        self.n_subjects = len(codes)

    @staticmethod
    def _per_window(x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1).mean(axis=1)

    def _per_subject_mean(self, per_window: np.ndarray) -> float:
        sums = np.bincount(self.subject_index, weights=per_window, minlength=self.n_subjects)
        counts = np.bincount(self.subject_index, minlength=self.n_subjects)
        return float((sums / counts).mean())

    def crps(self, scale: float) -> float:
        """Mean fair CRPS over subjects of the draws scaled by ``scale``."""
        skill = self._per_window(np.abs(scale * self.residuals - self.error).mean(axis=1))
        return self._per_subject_mean(skill - scale * self.pair)

    def spread_skill(self, scale: float) -> float:
        """The evaluate stage's spread–skill of the scaled draws over all windows (it does
        not change when draws and truth shift by ``mu``, so it is taken on ``s r`` and
        ``y - mu``)."""
        return spread_skill(np.moveaxis(scale * self.residuals, 1, 0), self.error[:, 0])

    def best_scale(self, bounds: tuple[float, float] = SCALE_BOUNDS) -> float:
        """The scale in ``bounds`` with the lowest mean CRPS (it is convex in the scale)."""
        from scipy.optimize import minimize_scalar

        found = minimize_scalar(self.crps, bounds=bounds, method="bounded",
                                options={"xatol": 1e-4})  # fmt: skip
        return float(found.x)


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
            tokens, mask = model.encode(batch["condition"].to(device))
            offset = batch.get("time_offset")
            offset = None if offset is None else offset.to(device)
            drawn = conditioner.sample(
                model.decoder, tokens, mask, model.target_shape, n_samples,
                generator=generator, time_offset=offset,
            )  # fmt: skip
            means.append(model.mean_head(tokens, mask, offset).float().cpu().numpy())
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
    scale = scored.best_scale()
    conditioner.spread.fill_(scale)
    found = SpreadCalibration(
        scale=scale,
        crps_before=scored.crps(1.0),
        crps_after=scored.crps(scale),
        spread_skill_before=scored.spread_skill(1.0),
        spread_skill_after=scored.spread_skill(scale),
        n_windows=len(subjects),
        n_subjects=scored.n_subjects,
        n_samples=n_samples,
    )
    log.info(
        "spread calibrated on %d validation windows of %d subjects (%d draws each): scale "
        "%.3f; validation CRPS %.4f -> %.4f, spread-skill %.3f -> %.3f",
        found.n_windows, found.n_subjects, n_samples, scale, found.crps_before,
        found.crps_after, found.spread_skill_before, found.spread_skill_after,
    )  # fmt: skip
    if abs(scale - SCALE_BOUNDS[0]) < 1e-3 or abs(scale - SCALE_BOUNDS[1]) < 1e-3:
        log.warning(
            "spread scale %.3f is at the edge of the searched range %s: the residual draws "
            "are far from the validation error; check the model before trusting its samples",
            scale, SCALE_BOUNDS,
        )  # fmt: skip
    return found


def fit_spread(model, batches: Iterable[dict], n_samples: int = 16, seed: int = 0):
    """:func:`calibrate_spread` when ``model`` asks for it, else None (the train stage's hook)."""
    if not getattr(getattr(model, "conditioner", None), "calibrate_spread", False):
        return None
    return calibrate_spread(model, batches, n_samples, seed)
