"""The canonical double-gamma haemodynamic response and event regressors.

Written here (a dozen lines) instead of imported from ``nilearn.glm``: that
import costs ~2 s per process (it pulls in scikit-learn's estimator checks),
paid by every per-subject acquisition job of the workflow. The shape is
Glover's (1999) canonical HRF as nilearn and SPM define it: a gamma peak at
~5 s minus 0.35 × a gamma undershoot at ~11 s.
"""

from __future__ import annotations

from math import lgamma

import numpy as np

PEAK_S, UNDERSHOOT_S, DISPERSION, RATIO = 6.0, 12.0, 0.9, 0.35


def _gamma_pdf(t: np.ndarray, shape: float, scale: float) -> np.ndarray:
    out = np.zeros_like(t, dtype=np.float64)
    pos = t > 0
    x = t[pos]
    out[pos] = np.exp((shape - 1) * np.log(x) - x / scale - lgamma(shape) - shape * np.log(scale))
    return out


def canonical_hrf(dt: float, length_s: float = 32.0) -> np.ndarray:
    """The double-gamma HRF sampled every ``dt`` seconds from 0 to ``length_s``, summing to 1.

    Parameters
    ----------
    dt : float
        Sampling step in seconds (e.g. the TR).
    length_s : float
        Duration covered, in seconds.
    """
    if dt <= 0 or length_s <= dt:
        raise ValueError(f"need 0 < dt < length_s, got dt={dt}, length_s={length_s}")
    t = np.arange(0.0, length_s, dt)
    hrf = _gamma_pdf(t, PEAK_S / DISPERSION, DISPERSION) - RATIO * _gamma_pdf(
        t, UNDERSHOOT_S / DISPERSION, DISPERSION
    )
    return hrf / hrf.sum()


def event_regressor(onsets, durations, times: np.ndarray) -> np.ndarray:
    """Boxcars of the events on the regular grid ``times`` convolved with the HRF.

    Parameters
    ----------
    onsets, durations : array-like
        Event onsets and durations in seconds (an event lasts at least one step).
    times : ndarray, shape (N,)
        Regularly spaced time grid in seconds.

    Returns
    -------
    ndarray, shape (N,)
        The predicted response at ``times``.
    """
    times = np.asarray(times, dtype=np.float64)
    step = float(times[1] - times[0])
    box = np.zeros(len(times))
    for onset, duration in zip(np.atleast_1d(onsets), np.atleast_1d(durations), strict=True):
        box[(times >= onset) & (times < onset + max(float(duration), step))] = 1.0
    return np.convolve(box, canonical_hrf(step))[: len(times)]
