"""Per-atlas plans for :func:`modalmerge.data.parcellation.parcellate.roi_means`.

Two memory orders reach the kernel:

* time contiguous per voxel, a C-ordered ``(V, T)`` view: one sparse
  ``(R, V) @ (V, T)`` product (scipy's ``csr_matvecs``) reads each labelled
  voxel's time series once, contiguously, and never touches label-0 voxels;
* NIfTI's natural Fortran order, a C-ordered ``(T, V)`` view whose rows are
  whole volumes with x varying fastest: along each x-row of the label image
  a region occupies a few contiguous runs, so for every row the sums over its
  regions are one small dense product ``(T, w) @ (w, K)`` (``K`` = regions in
  the row, ``w`` = the labelled x-window). ``numpy.matmul`` runs these as
  batched BLAS calls over strided views of the data (no copy, label-0 rows
  and the x-margins outside the brain are never read); a sparse ``(R, slots)``
  matrix then adds the per-row sums into regions.

Plans depend only on the labels (and the requested regions), so they are
built once per atlas and kept in a small cache (confirmed against the labels).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["RowPlan", "column_plan", "region_sums_rows", "row_plan"]

_CACHE: dict[tuple, object] = {}
_CACHE_SIZE = 12  # a few plans per atlas and memory order (parcellate, roi_kernel)
_BLAS: list = []  # the threadpoolctl controller, made on first use


def _one_blas_thread():
    """Limit BLAS to one thread: multi-threaded OpenBLAS on these many small
    products spins against other processes on a busy machine (measured 100x slower)."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS.append(ThreadpoolController())
        except ImportError:  # threadpoolctl comes with scikit-learn; run unlimited without it
            _BLAS.append(None)
    if _BLAS[0] is None:
        return contextlib.nullcontext()
    return _BLAS[0].limit(limits=1, user_api="blas")


@dataclass(frozen=True)
class RowPlan:
    """Dense per-row products for a ``(T, rows * row_length)`` array.

    Attributes
    ----------
    chunks : list of tuple
        ``(row0, row1, x0, x1, weights)``: rows ``row0:row1`` restricted to
        x in ``x0:x1``; ``weights`` (n_rows, K, x1 - x0) holds 0/1 slot masks.
    combine : scipy.sparse.csr_matrix, shape (R, n_slots)
        Adds the slot sums (chunks in order, rows, then K slots) into regions.
    n_slots : int
    """

    chunks: list
    combine: sp.csr_matrix
    n_slots: int


def _cached(kind: str, column: np.ndarray, extra: tuple, build):
    """Plan for ``column`` from the cache, or ``build()`` it.

    Looked up by shape and a strided sample, then confirmed with a full
    comparison (memory speed, far cheaper than hashing every byte).
    """
    sample = column[:: max(1, len(column) // 4096)]
    key = (kind, column.shape, hashlib.blake2b(sample.tobytes(), digest_size=16).digest(), *extra)
    hit = _CACHE.get(key)
    if hit is not None and np.array_equal(hit[0], column):
        return hit[1]
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    plan = build()
    _CACHE[key] = (column.copy(), plan)
    return plan


def column_plan(column: np.ndarray, n_roi: int, dtype: np.dtype) -> sp.csr_matrix:
    """Sparse ``(R, V)`` 0/1 matrix summing voxels into regions.

    Parameters
    ----------
    column : ndarray of int64, shape (V,)
        Output column per voxel in the data's memory order; ``n_roi`` = ignored.
    n_roi : int
    dtype : numpy dtype
        Dtype of the data (the product keeps it).
    """

    def build() -> sp.csr_matrix:
        keep = np.flatnonzero(column < n_roi)
        ones = np.ones(len(keep), dtype=dtype)
        return sp.csr_matrix((ones, (column[keep], keep)), shape=(n_roi, len(column)))

    return _cached("column", column, (n_roi, np.dtype(dtype).str), build)


def row_plan(column: np.ndarray, n_roi: int, row_length: int, rows_per_chunk: int) -> RowPlan:
    """Build (or fetch) the per-row product plan, see :class:`RowPlan`.

    Parameters
    ----------
    column : ndarray of int64, shape (V,)
        Output column per voxel in memory order; ``n_roi`` = ignored.
    n_roi : int
    row_length : int
        Voxels per row: a multiple of X of an (X, Y, Z) grid keeps rows
        aligned with the atlas's x-rows; need not divide V.
    rows_per_chunk : int
        Rows per chunk; chunks keep their own x-window and K.
    """

    def build() -> RowPlan:
        n_rows = -(-len(column) // row_length)
        padded = np.full(n_rows * row_length, n_roi, dtype=np.int64)
        padded[: len(column)] = column
        grid = padded.reshape(n_rows, row_length)
        inside = grid < n_roi
        row_idx, x_idx = np.nonzero(inside)
        label = grid[row_idx, x_idx]
        # distinct (row, region) pairs in row order; slot = rank within the row
        pairs, pair_of = np.unique(row_idx * (n_roi + 1) + label, return_inverse=True)
        pair_row, pair_region = pairs // (n_roi + 1), pairs % (n_roi + 1)
        first = np.searchsorted(pair_row, pair_row, side="left")
        pair_slot = np.arange(len(pairs)) - first
        n_slots_row = np.bincount(pair_row, minlength=len(grid))
        chunks, slot_rows, slot_regions, offset = [], [], [], 0
        starts = list(range(0, n_rows, rows_per_chunk))
        if len(column) % row_length:  # the last, partial row gets a chunk of its own
            starts = sorted(set(starts) | {n_rows - 1})
        for start, stop in zip(starts, [*starts[1:], n_rows], strict=True):
            busy = np.flatnonzero(n_slots_row[start:stop])
            if not len(busy):
                continue
            r0, r1 = start + busy[0], start + busy[-1] + 1
            xs = x_idx[slice(*np.searchsorted(row_idx, [r0, r1]))]
            x0, x1 = int(xs.min()), int(xs.max()) + 1
            k = int(n_slots_row[r0:r1].max())
            mine = slice(*np.searchsorted(row_idx, [r0, r1]))  # nonzero() sorts by row
            weights = np.zeros((r1 - r0, k, x1 - x0), dtype=np.float32)
            slot = pair_slot[pair_of[mine]]
            weights[row_idx[mine] - r0, slot, x_idx[mine] - x0] = 1.0
            p = slice(*np.searchsorted(pair_row, [r0, r1]))
            slot_rows.append(offset + (pair_row[p] - r0) * k + pair_slot[p])
            slot_regions.append(pair_region[p])
            chunks.append((int(r0), int(r1), x0, x1, weights))
            offset += (r1 - r0) * k
        rows_ = np.concatenate(slot_rows) if slot_rows else np.zeros(0, np.int64)
        regions = np.concatenate(slot_regions) if slot_regions else np.zeros(0, np.int64)
        combine = sp.csr_matrix(
            (np.ones(len(rows_), np.float32), (regions, rows_)), shape=(n_roi, offset)
        )
        return RowPlan(chunks, combine, offset)

    return _cached("rows", column, (n_roi, row_length, rows_per_chunk), build)


def region_sums_rows(data_tv: np.ndarray, plan: RowPlan, row_length: int) -> np.ndarray:
    """Region sums of a C-contiguous ``(T, V)`` array through a :class:`RowPlan`.

    Returns
    -------
    ndarray, shape (R, T), dtype of ``data_tv``
    """
    n_time, n_vox = data_tv.shape
    if not data_tv.flags.c_contiguous:
        raise ValueError("region_sums_rows needs a C-contiguous (T, V) array")
    slot_sums = np.empty((plan.n_slots, n_time), dtype=data_tv.dtype)
    with _one_blas_thread():
        _chunk_products(data_tv, plan, row_length, slot_sums)
    combine = plan.combine.astype(data_tv.dtype, copy=False)
    return np.asarray(combine @ slot_sums)


def _chunk_products(
    data_tv: np.ndarray, plan: RowPlan, row_length: int, slot_sums: np.ndarray
) -> None:
    """Fill ``slot_sums`` (n_slots, T) with every chunk's batched product."""
    n_time, n_vox = data_tv.shape
    item = data_tv.itemsize
    offset = 0
    for r0, r1, x0, x1, weights in plan.chunks:
        n, k = weights.shape[:2]
        first, last = r0 * row_length + x0, (r1 - 1) * row_length + x1
        if last > n_vox:
            raise ValueError("plan does not fit the data")  # never for a plan of these labels
        # (n, w, T) strided view: rows r0:r1 (row_length apart), x in x0:x1, all volumes
        block = np.lib.stride_tricks.as_strided(
            data_tv[:, first:],
            shape=(n, x1 - x0, n_time),
            strides=(row_length * item, item, n_vox * item),
            writeable=False,
        )
        out = slot_sums[offset : offset + n * k].reshape(n, k, n_time)
        np.matmul(weights.astype(data_tv.dtype, copy=False), block, out=out)
        offset += n * k
