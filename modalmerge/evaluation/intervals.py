"""Intervals over held-out units and paired differences between predictors.

Every score in ``metrics.json`` also comes per held-out unit (a test subject
for subject splits, a subject's test block for time splits, a test region for
region samples; ``per_unit``). This module turns such lists into evidence:

- :func:`bootstrap_ci`: the 95 % percentile bootstrap interval of the mean
  over units (resampling units with replacement, ``n_boot`` resamples, seeded);
- :func:`ratio_of_means_ci`: the same interval for a ratio of two per-unit means (the
  realism ratios: resampling units once for numerator and denominator together);
- :func:`paired_ratio_difference`: the difference of two such ratios over a common
  denominator (two predictors' realism ratios against the same truth), resampled jointly;
- :func:`paired_difference`: the per-unit difference ``a - b`` of two
  predictors scored on the same units, its mean, its bootstrap interval and
  the two-sided Wilcoxon signed-rank p-value (:func:`scipy.stats.wilcoxon`);
- :func:`verdict`: ``"beats"`` only when the interval of the difference lies
  above zero and rests on at least :data:`MIN_UNITS_FOR_VERDICT` (5) held-out
  units, else ``"does not beat"``.

Why a percentile bootstrap of the mean: the units are few (often 5–10 test
subjects) and their scores bounded and skewed (correlations), so no normal
approximation is assumed; the percentile interval needs no variance formula
and the same code serves every metric. Resampling the unit indices once per
resample and applying them to both predictors keeps the difference paired.
With very few units the interval is crude and too narrow (n = 2 gives only
three possible resample means; percentile intervals undercover below roughly
10 units), and the signed-rank p cannot fall below 0.5 at n = 2 or 0.25 at
n = 3: read every interval with its ``n``. Why also Wilcoxon: a rank test of the same paired differences that does not
depend on the bootstrap's randomness; it is reported, the verdict does not use it.

Undefined cases give NaN (written as an empty cell in ``summary.csv``): fewer
than 2 units (one unit says nothing about the spread), or a non-finite value
(PSNR of an exact prediction is ``inf``). A set of identical values has the
interval ``[value, value]``; a difference that is 0 on every unit has p = 1.
The verdict of an undefined interval is ``"does not beat"`` (no evidence).

The seed and the number of resamples are the documented constants
:data:`BOOTSTRAP_SEED` and :data:`N_BOOTSTRAP`; every interval uses the same
seed, so a row of ``summary.csv`` depends only on its own per-unit values
(not on the order of rows or on the other predictors).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

#: the seed of every bootstrap (resampled unit indices depend on it and on ``n`` only)
BOOTSTRAP_SEED = 20240611
#: resamples per interval
N_BOOTSTRAP = 2000
#: coverage of the percentile interval
CONFIDENCE = 0.95

BEATS, DOES_NOT_BEAT = "beats", "does not beat"
#: fewest held-out units a verdict is given on: below it the percentile interval is too crude
#: (n = 2 has three possible resample means) and the verdict is "does not beat"
MIN_UNITS_FOR_VERDICT = 5


def _values(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).ravel()


def _resample_means(values: np.ndarray, seed: int, n_boot: int) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement) of ``values``."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(values), size=(n_boot, len(values)))
    return values[index].mean(axis=1)


def bootstrap_ci(
    values,
    seed: int = BOOTSTRAP_SEED,
    n_boot: int = N_BOOTSTRAP,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of ``values`` (one per unit).

    Parameters
    ----------
    values : array-like, shape (n,)
        One score per held-out unit.
    seed : int
        Seeds the resampling; the same inputs and seed give the same interval.
    n_boot : int
        Number of resamples (>= 1).
    confidence : float
        Coverage in (0, 1); 0.95 gives the 2.5 and 97.5 percentiles.

    Returns
    -------
    (float, float)
        ``(low, high)``; ``(nan, nan)`` for fewer than 2 values or a non-finite
        one; ``(c, c)`` when every value is ``c``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    values = _values(values)
    if len(values) < 2 or not np.isfinite(values).all():
        return math.nan, math.nan
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(_resample_means(values, seed, n_boot), [tail, 100 - tail])
    return float(low), float(high)


def ratio_of_means_ci(
    numerator,
    denominator,
    seed: int = BOOTSTRAP_SEED,
    n_boot: int = N_BOOTSTRAP,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """The percentile bootstrap interval of ``mean(numerator) / mean(denominator)`` (one
    pair per unit; the same unit indices resample both).

    ``(nan, nan)`` for fewer than 2 units, a non-finite value, or a resample whose
    denominator mean is 0 (the ratio is then undefined, and so is its interval).
    """
    a, b = _values(numerator), _values(denominator)
    if a.shape != b.shape:
        raise ValueError(f"numerator and denominator differ in length: {len(a)} and {len(b)}")
    return _ratio_interval(a, b, seed, n_boot, confidence)


def _ratio_interval(a, b, seed, n_boot, confidence) -> tuple[float, float]:
    """The percentile interval of ``mean(a) / mean(b)`` over unit resamples, or NaNs
    (:func:`ratio_of_means_ci`; checked arguments)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    if len(a) < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return math.nan, math.nan
    index = np.random.default_rng(seed).integers(0, len(a), size=(n_boot, len(a)))
    below = b[index].mean(axis=1)
    if (below == 0).any():
        return math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(a[index].mean(axis=1) / below, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Difference:
    """A paired per-unit difference ``a - b``: its mean, interval, unit count and p-value."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    p_wilcoxon: float


def wilcoxon_p(differences) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences.

    NaN for fewer than 2 differences or a non-finite one; 1.0 when every
    difference is 0 (no evidence of any difference). Zero differences are
    dropped (scipy's ``zero_method="wilcox"``).
    """
    from scipy.stats import wilcoxon

    d = _values(differences)
    if len(d) < 2 or not np.isfinite(d).all():
        return math.nan
    if not d.any():
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample notes from scipy
        p = float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return p


def paired_difference(
    a,
    b,
    seed: int = BOOTSTRAP_SEED,
    n_boot: int = N_BOOTSTRAP,
    confidence: float = CONFIDENCE,
) -> Difference:
    """The paired difference ``a - b`` of two predictors scored on the same units.

    Parameters
    ----------
    a, b : array-like, shape (n,)
        Per-unit scores, unit ``i`` of ``a`` paired with unit ``i`` of ``b``.

    Returns
    -------
    Difference
        ``value`` is the mean difference (NaN when a value is not finite), the
        interval is :func:`bootstrap_ci` of the per-unit differences (resampling
        units, so pairs stay together), ``p_wilcoxon`` from :func:`wilcoxon_p`.
    """
    a, b = _values(a), _values(b)
    if a.shape != b.shape:
        raise ValueError(f"paired scores differ in length: {len(a)} and {len(b)}")
    with np.errstate(invalid="ignore"):
        d = a - b
    value = float(d.mean()) if len(d) and np.isfinite(d).all() else math.nan
    low, high = bootstrap_ci(d, seed=seed, n_boot=n_boot, confidence=confidence)
    return Difference(value, low, high, len(d), wilcoxon_p(d))


def paired_ratio_difference(
    numerator_a,
    numerator_b,
    denominator,
    seed: int = BOOTSTRAP_SEED,
    n_boot: int = N_BOOTSTRAP,
    confidence: float = CONFIDENCE,
) -> Difference:
    """The paired difference of two ratios of means over the same denominator,
    ``mean(a) / mean(d) - mean(b) / mean(d)``: two predictors' realism ratios against the
    same truth.

    The interval resamples units once for all three lists (:func:`ratio_of_means_ci` of
    ``a - b`` over ``d``); ``p_wilcoxon`` is :func:`wilcoxon_p` of the per-unit ``a - b``
    (the denominator is common, so it tests the same null). ``value`` is NaN where the
    ratio is undefined (a non-finite value, a zero mean denominator).
    """
    a, b, d = _values(numerator_a), _values(numerator_b), _values(denominator)
    if not a.shape == b.shape == d.shape:
        raise ValueError(f"paired ratios differ in length: {len(a)}, {len(b)} and {len(d)} units")
    with np.errstate(invalid="ignore"):
        diff = a - b
    defined = len(d) > 0 and np.isfinite(diff).all() and np.isfinite(d).all() and d.mean() != 0
    value = float(diff.mean() / d.mean()) if defined else math.nan
    low, high = _ratio_interval(diff, d, seed, n_boot, confidence)
    return Difference(value, low, high, len(d), wilcoxon_p(diff))


def verdict(difference: Difference) -> str:
    """``"beats"`` when the interval of ``a - b`` lies above zero and rests on at least
    :data:`MIN_UNITS_FOR_VERDICT` held-out units, else ``"does not beat"``."""
    enough = difference.n >= MIN_UNITS_FOR_VERDICT
    return BEATS if enough and difference.ci_low > 0 else DOES_NOT_BEAT
