"""Site harmonisation: ComBat on subject features, fitted on training subjects only.

:class:`ComBat` is the empirical-Bayes location/scale model of Johnson, Li &
Rabinovic (2007, Biostatistics 8:118) as adapted to imaging features by Fortin
et al. (2017 NeuroImage 161:149; 2018 NeuroImage 167:104), following the
reference implementation ``neuroCombat`` 0.2.12 step by step (parametric
priors, the same iteration and convergence rule):

1. ``x = X B`` by least squares on ``[site indicators, covariates]``; the
   grand mean is the site-size-weighted mean of the site intercepts and the
   pooled variance is the mean squared residual;
2. standardise: ``z = (x - grand mean - covariates @ beta) / sqrt(pooled variance)``;
3. per site ``g``: ``gamma_g`` = mean of ``z`` in the site, ``delta_g`` = its
   variance; shrink both across features with normal / inverse-gamma priors
   (estimated by moments from the site's own features) by iterating the
   conditional posterior means;
4. ``x* = (z - gamma*_g) / sqrt(delta*_g) * sqrt(pooled variance) + grand mean
   + covariates @ beta``: the site effects go, the covariate effects stay.

Fit on training subjects only (:meth:`ComBat.fit`); :meth:`ComBat.transform`
applies the stored fit. A site the fit has not seen (a held-out site in
leave-one-site-out) gets its ``gamma``/``delta`` estimated by step 3 from its
own subjects' features, with the training fit (``beta``, grand mean, pooled
variance) held fixed: only the held-out site's condition features are read,
never a target. Features with zero pooled variance pass through unchanged.

Why not the packages: ``neuroHarmonize`` >= 2.5 requires ``numpy < 2`` and
``pandas < 3`` (this project pins numpy 2.4, pandas 3.1), its 2.4.5 release
declares no dependencies but imports ``statsmodels`` and ``neuroCombat``, and
``neuroCombat`` is published as a source distribution only (no wheel); neither
applies a fit to a site absent from training. The test checks this module
against numbers produced by ``neuroCombat`` 0.2.12 on a worked example
(tests/test_harmonize.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ComBat", "covariate_matrix", "harmonize_features", "zscore_series"]

CONVERGENCE = 1e-4  # neuroCombat's: largest relative change of gamma and delta
MAX_ITERATIONS = 1000


def _priors(gamma_hat: np.ndarray, delta_hat: np.ndarray) -> tuple[float, float, float, float]:
    """Moment estimates of the normal prior of gamma and inverse-gamma prior of delta."""
    gamma_bar = float(np.mean(gamma_hat))
    tau2 = float(np.var(gamma_hat, ddof=1))
    m, s2 = float(np.mean(delta_hat)), float(np.var(delta_hat, ddof=1))
    a = (2 * s2 + m**2) / s2
    b = (m * s2 + m**3) / s2
    return gamma_bar, tau2, a, b


def _site_effects(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical-Bayes ``gamma*`` and ``delta*`` (p,) of one site's standardised data (n, p)."""
    n = len(z)
    gamma_hat = z.mean(axis=0)
    delta_hat = z.var(axis=0, ddof=1) if n > 1 else np.ones(z.shape[1])
    delta_hat = np.maximum(delta_hat, 1e-12)
    if z.shape[1] < 2 or n < 2:  # no spread across features to estimate priors from
        return gamma_hat, delta_hat
    gamma_bar, tau2, a, b = _priors(gamma_hat, delta_hat)
    g_old, d_old = gamma_hat, delta_hat
    for _ in range(MAX_ITERATIONS):
        g_new = (tau2 * n * gamma_hat + d_old * gamma_bar) / (tau2 * n + d_old)
        sum2 = np.sum((z - g_new) ** 2, axis=0)
        d_new = (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
        change = max(
            # as neuroCombat (signed denominator); a zero gamma: the absolute change
            np.max(np.abs(g_new - g_old) / np.where(g_old == 0, 1.0, g_old)),
            np.max(np.abs(d_new - d_old) / d_old),
        )
        g_old, d_old = g_new, d_new
        if change <= CONVERGENCE:
            break
    return g_old, d_old


def design_covariates(covariates: np.ndarray | None, n: int) -> np.ndarray:
    """Covariates as a float (n, k) matrix (k = 0 for None)."""
    if covariates is None:
        return np.zeros((n, 0))
    c = np.asarray(covariates, dtype=np.float64)
    return c.reshape(n, -1)


@dataclass
class ComBat:
    """ComBat harmonisation (see the module doc). ``fit`` on training data, then ``transform``.

    Examples
    --------
    >>> combat = ComBat().fit(x_train, sites_train, covariates_train)   # doctest: +SKIP
    >>> x_test_harmonised = combat.transform(x_test, sites_test, covariates_test)  # doctest: +SKIP
    """

    sites_: list = field(default_factory=list)
    beta_: np.ndarray | None = None  # (k, p) covariate effects
    grand_mean_: np.ndarray | None = None  # (p,)
    var_pooled_: np.ndarray | None = None  # (p,)
    gamma_: dict = field(default_factory=dict)  # site -> (p,)
    delta_: dict = field(default_factory=dict)  # site -> (p,)

    def fit(self, x: np.ndarray, sites, covariates: np.ndarray | None = None) -> ComBat:
        """Estimate covariate effects, pooled variance and each site's effects.

        Parameters
        ----------
        x : ndarray (n, p)
            Features of the training subjects.
        sites : sequence (n,)
            Site label of each subject (at least 2 subjects per site).
        covariates : ndarray (n, k), optional
            Biological covariates to preserve (numeric; categorical ones as indicators).
        """
        x = np.asarray(x, dtype=np.float64)
        sites = np.asarray(sites).astype(str)
        n = len(x)
        if x.ndim != 2 or len(sites) != n:
            raise ValueError(f"x must be (n, p) with one site per row; got {x.shape}, {len(sites)}")
        if not np.isfinite(x).all():
            raise ValueError("ComBat: x holds NaN or infinite values")
        self.sites_ = sorted(set(sites))
        small = [s for s in self.sites_ if np.sum(sites == s) < 2]
        if small:
            raise ValueError(f"ComBat needs at least 2 training subjects per site; {small} have 1")
        cov = design_covariates(covariates, n)
        indicators = (sites[:, None] == np.array(self.sites_)[None, :]).astype(np.float64)
        design = np.hstack([indicators, cov])
        coef = np.linalg.lstsq(design, x, rcond=None)[0]
        n_sites = len(self.sites_)
        weights = indicators.sum(axis=0) / n
        self.grand_mean_ = weights @ coef[:n_sites]
        self.beta_ = coef[n_sites:]
        self.var_pooled_ = np.mean((x - design @ coef) ** 2, axis=0)
        z = self._standardize(x, cov)
        for s in self.sites_:
            self.gamma_[s], self.delta_[s] = self._effects(z[sites == s])
        return self

    def _effects(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A site's effects over the features with variance (the others: 0 and 1)."""
        keep = self.var_pooled_ > 0
        gamma, delta = np.zeros(z.shape[1]), np.ones(z.shape[1])
        gamma[keep], delta[keep] = _site_effects(z[:, keep])
        return gamma, delta

    def _standardize(self, x: np.ndarray, cov: np.ndarray) -> np.ndarray:
        scale = np.sqrt(np.where(self.var_pooled_ > 0, self.var_pooled_, 1.0))
        return (x - self.grand_mean_ - cov @ self.beta_) / scale

    def transform(self, x: np.ndarray, sites, covariates: np.ndarray | None = None) -> np.ndarray:
        """Remove the site effects from ``x`` (n, p), keeping the covariate effects.

        A site the fit has not seen gets its effects estimated from its own rows
        here (at least 2 of them), the training fit held fixed.
        """
        if self.grand_mean_ is None:
            raise ValueError("ComBat: call fit before transform")
        x = np.asarray(x, dtype=np.float64)
        sites = np.asarray(sites).astype(str)
        if x.ndim != 2 or len(sites) != len(x) or x.shape[1] != len(self.grand_mean_):
            raise ValueError(
                f"x must be (n, {len(self.grand_mean_)}) with one site per row; got {x.shape}"
            )
        if not np.isfinite(x).all():
            raise ValueError("ComBat: x holds NaN or infinite values")
        cov = design_covariates(covariates, len(x))
        z = self._standardize(x, cov)
        out = np.empty_like(z)
        for s in sorted(set(sites)):
            rows = sites == s
            if s in self.gamma_:
                gamma, delta = self.gamma_[s], self.delta_[s]
            elif rows.sum() < 2:
                raise ValueError(f"ComBat: site {s!r} was not in training and has 1 subject")
            else:
                gamma, delta = self._effects(z[rows])
            out[rows] = (z[rows] - gamma) / np.sqrt(delta)
        scale = np.sqrt(self.var_pooled_)
        harmonised = out * scale + self.grand_mean_ + cov @ self.beta_
        return np.where(self.var_pooled_ > 0, harmonised, x)


def zscore_series(series: np.ndarray) -> np.ndarray:
    """Each ROI's series (T, R) z-scored over the run (a constant ROI stays 0).

    The time-series counterpart of ComBat: a site's intensity scale,
    smoothness and noise change the scale of a subject's ROI series; its own
    mean and SD remove that without any statistic of another subject (the
    same on training and held-out subjects, nothing fitted).
    """
    series = np.asarray(series, dtype=np.float64)
    sd = series.std(axis=0)
    return ((series - series.mean(axis=0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def covariate_matrix(table, categorical: list[str]) -> np.ndarray:
    """Covariates (n, k) from a participants table: numeric columns as they are,
    categorical ones (integer codes) as indicators of every level but the first."""
    import pandas as pd

    numeric = [c for c in table.columns if c not in categorical]
    parts = [table[numeric].to_numpy(np.float64)]
    for column in categorical:
        codes = table[column].astype(int).astype(str)
        parts.append(pd.get_dummies(codes, drop_first=True).to_numpy(np.float64))
    return np.hstack(parts) if parts else np.zeros((len(table), 0))


def harmonize_features(
    structural: dict[str, np.ndarray],
    connectivity: dict[str, np.ndarray] | None,
    train: list[str],
    sites: dict[str, str],
    covariates,
    categorical: list[str],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """ComBat on each subject's structural features (R, F) and connectivity (R, R).

    One :class:`ComBat` per kind of feature, fitted on the ``train`` subjects
    and applied to every subject, site as batch, ``covariates`` (the
    participants table without its site column; ``categorical`` names its
    coded columns) preserved. Connectivity is harmonised on its upper triangle
    and mirrored; the diagonal is kept.

    Returns
    -------
    structural, connectivity
        Dicts keyed by subject, float32, the input shapes.
    """
    subjects = list(structural)
    cov = covariate_matrix(covariates.loc[subjects], categorical)
    site = np.array([sites[s] for s in subjects])
    is_train = np.isin(subjects, list(train))

    def apply(x: np.ndarray) -> np.ndarray:
        combat = ComBat().fit(x[is_train], site[is_train], cov[is_train])
        return combat.transform(x, site, cov)

    shape = next(iter(structural.values())).shape
    flat = apply(np.stack([structural[s].reshape(-1) for s in subjects]))
    out_structural = {s: flat[k].reshape(shape).astype(np.float32) for k, s in enumerate(subjects)}
    if connectivity is None:
        return out_structural, None
    n = next(iter(connectivity.values())).shape[0]
    upper = np.triu_indices(n, 1)
    edges = apply(np.stack([connectivity[s][upper] for s in subjects]))
    out_connectivity = {}
    for k, s in enumerate(subjects):
        m = np.array(connectivity[s], dtype=np.float32)
        m[upper] = edges[k]
        m.T[upper] = edges[k]
        out_connectivity[s] = m
    return out_structural, out_connectivity
