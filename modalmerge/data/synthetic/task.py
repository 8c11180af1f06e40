"""The task paradigm shared by every subject, and its hemodynamic regressors."""

from __future__ import annotations

import numpy as np
import pandas as pd

from modalmerge.data.synthetic.hrf import event_regressor
from modalmerge.data.synthetic.params import STREAM_COHORT, SyntheticParams, rng_for

REGRESSOR_OVERSAMPLING = 8  # regressor samples per TR before shifting by latency


def task_events(p: SyntheticParams) -> pd.DataFrame:
    """The paradigm as a BIDS events table: ``onset``, ``duration`` (s) and ``trial_type``.

    Block design: ``block_s`` of task then ``rest_s`` of rest, starting after
    one rest period, trial types alternating. Event design: events of
    ``event_duration_s`` with onset-to-onset intervals uniform in
    ``event_isi_s`` (drawn once for the cohort), trial types in a random order.
    Events end before the run ends (``n_timepoints * tr``).
    """
    run_s = p.n_timepoints * p.tr
    types = p.trial_types
    if p.design == "block":
        period = p.block_s + p.rest_s
        onsets = np.arange(p.rest_s, run_s - p.block_s + 1e-9, period)
        durations = np.full(len(onsets), float(p.block_s))
        trial_types = [types[i % len(types)] for i in range(len(onsets))]
    else:
        rng = rng_for(p, 0, STREAM_COHORT + 200)
        onsets_list = []
        t = p.event_isi_s[0]
        while t + p.event_duration_s <= run_s:
            onsets_list.append(t)
            t += rng.uniform(*p.event_isi_s)
        onsets = np.asarray(onsets_list)
        durations = np.full(len(onsets), float(p.event_duration_s))
        trial_types = [types[int(k)] for k in rng.integers(0, len(types), len(onsets))]
    if len(onsets) == 0:
        raise ValueError(f"the run ({run_s:g} s) is too short for one {p.design} of this paradigm")
    return pd.DataFrame(
        {"onset": np.round(onsets, 3), "duration": durations, "trial_type": trial_types}
    )


def condition_regressors(p: SyntheticParams) -> tuple[np.ndarray, np.ndarray]:
    """Each condition convolved with the canonical (Glover) HRF on a fine time grid.

    Returns
    -------
    times : ndarray, shape (N,)
        Fine time grid in s, from ``-2 * tr`` to the end of the run.
    regressors : ndarray, shape (C, N)
        Per condition, scaled so that the largest response of the run is 1.
    """
    events = task_events(p)
    step = p.tr / REGRESSOR_OVERSAMPLING
    times = np.arange(-2 * p.tr, p.n_timepoints * p.tr + 4 * p.tr, step)
    out = np.zeros((len(p.trial_types), len(times)))
    for c, name in enumerate(p.trial_types):
        sel = events[events.trial_type == name]
        if len(sel) == 0:
            continue
        reg = event_regressor(sel.onset.to_numpy(), sel.duration.to_numpy(), times)
        out[c] = reg / np.max(np.abs(reg))
    return times, out


def evoked_response(
    p: SyntheticParams,
    amplitude: np.ndarray,
    latency: np.ndarray,
    condition_weights: np.ndarray,
) -> np.ndarray:
    """Noise-free task-evoked regional signal at the acquisition times.

    Parameters
    ----------
    amplitude : ndarray, shape (R,)
        Percent signal change of each region's response.
    latency : ndarray, shape (R,)
        Delay of each region's response in s (positive: later).
    condition_weights : ndarray, shape (C, R)
        Relative response of each region to each condition.

    Returns
    -------
    ndarray, shape (T, R)
        Percent signal change, volume ``t`` at time ``t * tr``.
    """
    times, regs = condition_regressors(p)
    frame_times = np.arange(p.n_timepoints) * p.tr
    shifted = frame_times[None, :] - np.asarray(latency)[:, None]  # (R, T)
    out = np.zeros((p.n_timepoints, len(amplitude)))
    for c in range(regs.shape[0]):
        resp = np.interp(shifted, times, regs[c])  # (R, T)
        out += (condition_weights[c] * amplitude)[None, :] * resp.T
    return out
