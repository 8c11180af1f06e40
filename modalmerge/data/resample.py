"""ROI time series onto a common TR (``shard.tr``): cohorts whose sites differ in TR.

Windows (``shard.window``, ``shard.stride``) count volumes, so a sample must
span the same duration for every subject: with ``shard.tr`` set, the shard
stage resamples each subject's parcellated ROI series from its own TR (the
``tr`` of its parcellated ``.npz``, from the run's header and sidecar) to that
TR before cutting windows, and the evaluate stage resamples the synthetic
truth (evoked and processed noise-free series) of a test subject the same way.

Method: :func:`scipy.signal.resample_poly` (polyphase FIR, Kaiser window),
with ``up / down`` the TR ratio as a fraction of small integers. Why it:

- downsampling (a 0.8 s site to 2 s) needs an anti-aliasing low-pass at the new
  Nyquist frequency: plain interpolation (``numpy.interp``, cubic splines) would
  fold the faster site's 0.25-0.6 Hz content (cardiac/respiratory aliasing,
  thermal noise) into the band the models are scored on; ``resample_poly``
  filters and decimates in one step;
- unlike :func:`scipy.signal.resample` (FFT), it does not assume the run is
  periodic, so the end of a run does not leak into its start;
- ``padtype="line"`` extends each series linearly past its ends while filtering,
  so a run's first and last volumes are not pulled towards zero.

Volume ``k`` of the resampled series lies at ``k * tr`` seconds from the
run's first volume, as volume ``k`` of the original lies at ``k * tr_native``:
the time axis keeps its origin (the group-mean baseline's "same time" stays the
same time in seconds). The output has ``ceil(n * up / down)`` volumes.

What it cannot do, and refuses: a run with censored volumes (gaps) whose TR
differs from ``shard.tr`` (resampling would bridge the gap), a TR ratio that is
not a fraction with a denominator up to :data:`MAX_DENOMINATOR`, and runs
without a known TR.

>>> resample_factors(0.8, 2.0), resample_factors(2.0, 0.8), resample_factors(0.72, 2.0)
((2, 5), (5, 2), (9, 25))
>>> resampled_length(250, 0.8, 2.0)
100
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

__all__ = ["MAX_DENOMINATOR", "TR_TOLERANCE", "resample_factors", "resample_series", "same_tr"]

#: largest ``up`` or ``down`` factor accepted (a 1,000-tap-scale polyphase filter at most)
MAX_DENOMINATOR = 100
#: TRs closer than this (seconds) are the same TR (headers round them)
TR_TOLERANCE = 1e-3


def same_tr(a: float, b: float) -> bool:
    """Whether two TRs (seconds) are equal up to :data:`TR_TOLERANCE`."""
    return abs(float(a) - float(b)) <= TR_TOLERANCE


def resample_factors(tr_from: float, tr_to: float) -> tuple[int, int]:
    """``(up, down)``: the sampling-rate ratio ``tr_from / tr_to`` as a reduced fraction.

    Raises
    ------
    ValueError
        A TR that is not a positive finite number, or a ratio that no fraction
        with ``up, down <= MAX_DENOMINATOR`` gives to within 1e-6.
    """
    for name, tr in (("source TR", tr_from), ("target TR", tr_to)):
        if not (isinstance(tr, int | float | np.floating) and math.isfinite(tr) and tr > 0):
            raise ValueError(f"{name} must be a positive number of seconds, got {tr!r}")
    ratio = float(tr_from) / float(tr_to)
    frac = Fraction(ratio).limit_denominator(MAX_DENOMINATOR)
    if frac.numerator > MAX_DENOMINATOR or abs(float(frac) - ratio) > 1e-6 * ratio:
        raise ValueError(
            f"TR {tr_from:g} s -> {tr_to:g} s: the ratio {ratio:.6g} is not a fraction of "
            f"integers up to {MAX_DENOMINATOR} (polyphase resampling needs one); choose a "
            "shard.tr whose ratio to every site's TR is simple"
        )
    return frac.numerator, frac.denominator


def resampled_length(n_volumes: int, tr_from: float, tr_to: float) -> int:
    """Volumes of a run of ``n_volumes`` at ``tr_from`` once resampled to ``tr_to``."""
    if same_tr(tr_from, tr_to):
        return int(n_volumes)
    up, down = resample_factors(tr_from, tr_to)
    return math.ceil(n_volumes * up / down)


def resample_series(series: np.ndarray, tr_from: float, tr_to: float) -> np.ndarray:
    """Series ``(T, R)`` sampled every ``tr_from`` s, resampled to every ``tr_to`` s.

    Returns the input (as float32) when the TRs are the same; otherwise
    ``(ceil(T * up / down), R)`` float32 (module doc for the method).
    """
    from scipy.signal import resample_poly

    series = np.asarray(series)
    if same_tr(tr_from, tr_to):
        return series.astype(np.float32, copy=False)
    up, down = resample_factors(tr_from, tr_to)
    out = resample_poly(series.astype(np.float64), up, down, axis=0, padtype="line")
    return out.astype(np.float32)
