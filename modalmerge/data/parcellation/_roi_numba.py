"""Compiled region-sum kernels (numba); imported lazily by :mod:`modalmerge.data.parcellation.roi_kernel`.

Both kernels read the data once in memory order, touch only labelled voxels and
accumulate region sums in float64 (the time-major one sums short runs of at most
16 voxels in the data's dtype first). ``cache=True`` keeps the machine code on disk next to
this file (or numba's user cache), so only the first call on a machine compiles.
"""

from __future__ import annotations

import numba
import numpy as np

_BLOCK = 8  # volumes summed together in the time-major kernel (8 independent adders)


@numba.njit(cache=True, nogil=True)
def sums_time_major(data_tv, starts, lengths, regions, n_roi):  # pragma: no cover - compiled
    """Sums (T, R) of a C-contiguous (T, V) array over runs of one region.

    Runs are stretches of at most ``MAX_RUN`` consecutive voxels of one region
    (memory order). A run is summed in the data's dtype (short: no per-voxel
    cast) and added into float64 region sums. Eight volumes are read side by
    side so the run sums are eight independent chains, not one latency-bound one.
    """
    n_time = data_tv.shape[0]
    out = np.zeros((n_time, n_roi), dtype=np.float64)
    zero = np.zeros(1, dtype=data_tv.dtype)[0]  # run sums in the data's dtype (no casts)
    n_runs = starts.shape[0]
    t = 0
    while t + _BLOCK <= n_time:
        v0, v1, v2, v3 = data_tv[t], data_tv[t + 1], data_tv[t + 2], data_tv[t + 3]
        v4, v5, v6, v7 = data_tv[t + 4], data_tv[t + 5], data_tv[t + 6], data_tv[t + 7]
        for j in range(n_runs):
            s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
            first = starts[j]
            for i in range(first, first + lengths[j]):
                s0 += v0[i]
                s1 += v1[i]
                s2 += v2[i]
                s3 += v3[i]
                s4 += v4[i]
                s5 += v5[i]
                s6 += v6[i]
                s7 += v7[i]
            r = regions[j]
            out[t, r] += s0
            out[t + 1, r] += s1
            out[t + 2, r] += s2
            out[t + 3, r] += s3
            out[t + 4, r] += s4
            out[t + 5, r] += s5
            out[t + 6, r] += s6
            out[t + 7, r] += s7
        t += _BLOCK
    while t < n_time:
        v = data_tv[t]
        for j in range(n_runs):
            s = zero
            first = starts[j]
            for i in range(first, first + lengths[j]):
                s += v[i]
            out[t, regions[j]] += s
        t += 1
    return out


@numba.njit(cache=True, nogil=True)
def sums_voxel_major(data_vt, voxels, regions, n_roi):  # pragma: no cover - compiled
    """Sums (T, R) of a C-contiguous (V, T) array: each labelled voxel's series
    (contiguous) is added into its region's row."""
    n_time = data_vt.shape[1]
    acc = np.zeros((n_roi, n_time), dtype=np.float64)
    for j in range(voxels.shape[0]):
        row = data_vt[voxels[j]]
        dst = acc[regions[j]]
        for t in range(n_time):
            dst[t] += row[t]
    return acc.T.copy()
