"""Region sums through compiled numba kernels, when numba is installed.

:func:`modalmerge.data.parcellation.parcellate.roi_means` calls :func:`region_sums` when
:data:`HAVE_NUMBA` is true and its numpy/BLAS plans
(:mod:`modalmerge.data.parcellation.label_runs`) otherwise. Per atlas, the labelled voxels
are listed once in memory order (flat index and region), and for the
time-major layout merged into runs of consecutive voxels of one region; both
plans are cached like the numpy ones. The kernels live in
:mod:`modalmerge.data.parcellation._roi_numba`, imported on first use so that importing
this package does not pay numba's import time.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from modalmerge.data.parcellation.label_runs import _cached

__all__ = ["HAVE_NUMBA", "MIN_ELEMENTS", "region_sums"]

#: Longest run summed in the data's own dtype before adding into float64 region sums:
#: bounds the float32 rounding of a partial sum to ~16 ulp (typically ~4).
MAX_RUN = 16

#: True when numba is importable; tests switch it off to exercise the numpy path.
HAVE_NUMBA: bool = importlib.util.find_spec("numba") is not None

#: Smallest run (voxels x volumes) parcellated with the compiled kernel. Loading numba and
#: its cached kernel costs ~0.4 s per process, more than the kernel saves on a small run
#: (a workflow job parcellates one subject); full-size runs (~2e8 values) gain ~0.1 s or more.
MIN_ELEMENTS: int = 20_000_000


def _voxel_plan(column: np.ndarray, n_roi: int) -> tuple[np.ndarray, np.ndarray]:
    def build() -> tuple[np.ndarray, np.ndarray]:
        voxels = np.flatnonzero(column < n_roi)
        return voxels, column[voxels].astype(np.int32)

    return _cached("numba-voxels", column, (n_roi,), build)


def _run_plan(column: np.ndarray, n_roi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def build() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        voxels, regions = _voxel_plan(column, n_roi)
        if not len(voxels):
            empty = np.zeros(0, np.int64)
            return empty, empty, empty.astype(np.int32)
        breaks = np.flatnonzero((np.diff(voxels) != 1) | (np.diff(regions) != 0)) + 1
        first = np.concatenate([[0], breaks])
        lengths = np.diff(np.concatenate([first, [len(voxels)]]))
        # split runs longer than MAX_RUN: the kernel sums a run in the data's dtype
        pieces = -(-lengths // MAX_RUN)
        run = np.repeat(np.arange(len(first)), pieces)
        within = np.arange(len(run)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        offset = within * MAX_RUN
        starts = voxels[first][run] + offset
        return starts, np.minimum(MAX_RUN, lengths[run] - offset), regions[first][run]

    return _cached("numba-runs", column, (n_roi,), build)


def region_sums(values: np.ndarray, column: np.ndarray, n_roi: int) -> np.ndarray:
    """Sum a ``(V, T)`` array per region with a compiled kernel.

    Parameters
    ----------
    values : ndarray of float32 or float64, shape (V, T)
        C-contiguous (time contiguous per voxel) or Fortran-contiguous
        (volumes contiguous, NIfTI's order); read once in that order.
    column : ndarray of int64, shape (V,)
        Output column (region index, 0..n_roi-1) per voxel; ``n_roi`` = ignored.
    n_roi : int
        Number of regions R.

    Returns
    -------
    ndarray of float64, shape (T, R)
        Sums per time point and region, accumulated in float64.

    Raises
    ------
    ValueError
        ``values`` is neither C- nor Fortran-contiguous, or not float32/float64.
    """
    from modalmerge.data.parcellation import _roi_numba

    values = np.asarray(values)  # a view; numba takes plain ndarrays (not np.memmap)
    if values.dtype not in (np.float32, np.float64):
        raise ValueError(f"region_sums needs float32 or float64 data, got {values.dtype}")
    if values.flags.c_contiguous:
        voxels, regions = _voxel_plan(column, n_roi)
        return _roi_numba.sums_voxel_major(values, voxels, regions, n_roi)
    if values.flags.f_contiguous:
        starts, lengths, regions = _run_plan(column, n_roi)
        return _roi_numba.sums_time_major(values.T, starts, lengths, regions, n_roi)
    raise ValueError("region_sums needs a C- or Fortran-contiguous (V, T) array")
