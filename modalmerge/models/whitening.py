"""The ROI covariance of a residual diffusion model's training residuals (``whiten``).

A residual diffusion model with ``mean_from`` and ``whiten`` runs its chain on the frozen
mean head's residuals whitened across ROIs
(:meth:`~modalmerge.models.diffusion.DiffusionConditioning.set_whitening`). The covariance
it whitens by is estimated here, once, before the denoiser trains: one pass of the frozen
encoder and mean head over the training windows, every time point of every window a row
of ROI values.

Why by hand: scikit-learn's :func:`~sklearn.covariance.ledoit_wolf` needs every row in
memory at once (windows x time points x ROIs: grows with the cohort), and has no
incremental form. Its estimate (``assume_centered=True``) needs only two ROI x ROI sums,
``X^T X`` and ``(X^2)^T (X^2)``, so :class:`RunningLedoitWolf` accumulates them block by
block and applies scikit-learn's formulas to them (tests compare the two to rounding).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import torch

from modalmerge.models.generative import mean_prediction

log = logging.getLogger(__name__)

__all__ = ["RunningLedoitWolf", "fit_whitening"]


class RunningLedoitWolf:
    """Ledoit-Wolf shrunk second-moment matrix of rows added in blocks (``assume_centered``)."""

    def __init__(self, n_features: int):
        self.n_features = int(n_features)
        self.n_rows = 0
        self._xx = np.zeros((n_features, n_features))
        self._x2x2 = np.zeros((n_features, n_features))

    def add(self, rows: np.ndarray) -> None:
        """Add a block of rows ``(n, n_features)``; refuses non-finite values."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"rows must be (n, {self.n_features}), got {rows.shape}")
        if not np.isfinite(rows).all():
            raise ValueError("rows hold NaN or infinite values")
        squared = rows**2
        self._xx += rows.T @ rows
        self._x2x2 += squared.T @ squared
        self.n_rows += len(rows)

    def estimate(self) -> tuple[np.ndarray, float]:
        """The shrunk matrix and its shrinkage (scikit-learn's ``ledoit_wolf`` on all rows)."""
        n, p = self.n_rows, self.n_features
        if n < 2:
            raise ValueError(f"a covariance needs at least 2 rows, got {n}")
        emp = self._xx / n
        trace = np.trace(emp)
        mu = trace / p
        delta_ = np.sum(self._xx**2) / n**2
        beta = (np.sum(self._x2x2) / n - delta_) / (p * n)
        delta = (delta_ - 2.0 * mu * trace + p * mu**2) / p
        beta = min(beta, delta)
        shrinkage = 0.0 if beta == 0 else float(beta / delta)
        shrunk = (1.0 - shrinkage) * emp
        shrunk.flat[:: p + 1] += shrinkage * mu
        return shrunk, shrinkage


@torch.no_grad()
def fit_whitening(model, batches: Iterable[dict]) -> float:
    """Fit ``model``'s whitening (a residual diffusion model with ``mean_from`` and
    ``whiten``, its mean head adopted) on the residuals ``target - mu(condition)`` of
    ``batches`` (the training split's, in any order). Returns the Ledoit-Wolf shrinkage."""
    conditioner = model.conditioner
    if not getattr(conditioner, "whiten", False):
        raise ValueError("fit_whitening needs a diffusion model built with whiten=True")
    n_rois = int(model.target_shape[-1])
    running = RunningLedoitWolf(n_rois)
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            tokens, mask = model.encode(batch["condition"])
            offset = batch.get("time_offset")
            mean = mean_prediction(model, tokens, mask, offset, batch["condition"])
            residual = batch["target"].float() - mean.float()
            running.add(residual.reshape(-1, n_rois).double().cpu().numpy())
    finally:
        model.train(was_training)
    covariance, shrinkage = running.estimate()
    conditioner.set_whitening(torch.from_numpy(covariance))
    sd = np.sqrt(np.diag(covariance))
    corr = covariance / np.outer(sd, sd)
    log.info(
        "whitening: residual ROI covariance of %d time points (Ledoit-Wolf shrinkage %.3f, "
        "mean inter-ROI correlation %.3f)",
        running.n_rows, shrinkage, (corr.sum() - n_rois) / (n_rois * (n_rois - 1)),
    )  # fmt: skip
    return shrinkage
