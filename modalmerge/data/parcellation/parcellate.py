"""Parcellate one subject: ROI time series, connectivity and ROI structural features.

The inputs are the preprocess stage's outputs, already on the atlas grid (this
stage never resamples: an image off the grid is an error). The core,
:func:`roi_means`, averages voxels per region in one pass over the BOLD array
and matches :class:`nilearn.maskers.NiftiLabelsMasker` (``strategy="mean"``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from modalmerge.data.bold_chunks import ChunkPlan
from modalmerge.data.derivatives import write_dataset_description
from modalmerge.data.nifti import check_same_grid, load_image, load_labels
from modalmerge.data.nifti_stream import open_run
from modalmerge.data.parcellation import roi_kernel
from modalmerge.data.parcellation.connectivity import connectivity
from modalmerge.data.parcellation.label_runs import _cached, column_plan, region_sums_rows, row_plan
from modalmerge.data.parcellation.labels import read_labels
from modalmerge.data.preprocess import read_censored_volumes, read_tr
from modalmerge.io import InputError, atomic_path
from modalmerge.settings import CONNECTIVITY_KINDS, ParcellateSettings, PreprocessSettings

__all__ = [
    "CONNECTIVITY_KINDS",
    "FEATURE_NAMES",
    "parcellate_subject",
    "roi_means",
    "structural_features",
    "write_tables",
]

FEATURE_NAMES = (
    "t1_mean",  # mean normalised T1 intensity in the region
    "t1_std",  # its standard deviation
    "t1_median",
    "tissue_voxels",  # voxels above tissue_threshold
    "tissue_volume_mm3",  # the same in mm^3
    "tissue_fraction",  # tissue voxels / region voxels
)


#: ``preprocess.chunk_mb``'s default: the chunk parcellate reads a long run in
CHUNK_MB = PreprocessSettings().chunk_mb

_ROW_BLOCK = 360  # voxels per dense product in Fortran order (bench_parcellate.py)


def _column_index(flat_labels: np.ndarray, roi_labels: np.ndarray) -> np.ndarray:
    """Map each voxel's label to its output column; voxels of other labels -> R."""
    n_roi = len(roi_labels)
    size = int(max(flat_labels.max(initial=0), roi_labels.max(initial=0))) + 1
    lut = np.full(size, n_roi, dtype=np.int64)
    lut[roi_labels] = np.arange(n_roi)
    return lut[flat_labels]


def _atlas_columns(
    labels: np.ndarray, flat_labels: np.ndarray | None, order: str, roi_labels
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(roi_labels, column per voxel in memory order, voxels per region), cached per atlas."""
    requested = None if roi_labels is None else tuple(np.asarray(roi_labels).ravel().tolist())

    def build() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        flat = labels.reshape(-1, order=order) if flat_labels is None else flat_labels
        if requested is None:
            present = np.flatnonzero(np.bincount(flat))
            rois = present[present != 0]
        else:
            rois = np.asarray(requested, dtype=np.int64)
        column = _column_index(flat, rois)
        counts = np.bincount(column, minlength=len(rois) + 1)[: len(rois)]
        return rois, column, counts

    # keyed by the labels' bytes in memory order (a view when contiguous) and their layout
    key = (order, labels.shape, labels.strides, labels.dtype.str, requested)
    return _cached("columns", labels.ravel(order="K"), key, build)


def roi_means(
    data: np.ndarray,
    labels: np.ndarray,
    roi_labels: np.ndarray | None = None,
    compiled: bool | None = None,
) -> np.ndarray:
    """Mean signal per labelled region, in one pass over the data.

    Parameters
    ----------
    data : ndarray, shape (X, Y, Z, T), (X, Y, Z) or (V, T)
        Voxel signals, read once in their memory order, label-0 voxels
        skipped, without copying a contiguous array; per-atlas plans are
        cached. With numba installed a compiled kernel sums them in float64
        (:mod:`modalmerge.data.parcellation.roi_kernel`); without it, a 4D array in Fortran
        order (as NIfTI stores it) goes through its (T, V) view, one small
        dense product per labelled x-row of the atlas
        (:mod:`modalmerge.data.parcellation.label_runs`), and a C-ordered one (time
        contiguous per voxel) through one sparse (R, V) @ (V, T) product.
    labels : ndarray of int, shape (X, Y, Z) or (V,)
        Region label per voxel; 0 (or any label not in ``roi_labels``) is ignored.
    roi_labels : ndarray of int, shape (R,), optional
        Regions to return, in this order. Default: the sorted non-zero labels
        present, the order NiftiLabelsMasker uses.
    compiled : bool, optional
        Use the numba kernel (when installed); default: when the data hold at least
        :data:`~modalmerge.data.parcellation.roi_kernel.MIN_ELEMENTS` values. Chunks of a
        long run pass the whole run's choice, so they sum as the whole run would.

    Returns
    -------
    ndarray of float32, shape (T, R)
        Mean per region and time point (T = 1 for a 3D input).

    Raises
    ------
    ValueError
        Shapes disagree, or a requested region has no voxel.
    """
    data = np.asanyarray(data)
    labels = np.asarray(labels)
    if data.ndim == 3:
        data = data[..., np.newaxis]
    if data.ndim == 4:
        if data.shape[:3] != labels.shape:
            raise ValueError(f"data grid {data.shape[:3]} != labels grid {labels.shape}")
        n_vox, n_time = int(np.prod(data.shape[:3])), data.shape[3]
        fortran = data.flags.f_contiguous and not data.flags.c_contiguous
        order = "F" if fortran else "C"
        data_vt = data.reshape(n_vox, n_time, order=order)  # a view when contiguous
        flat_labels = None  # labels.reshape(-1, order=order), made only on a cache miss
        # Fortran order: each volume is x-rows of X voxels (x fastest); products over
        # blocks of ~360 voxels (whole x-rows) balance BLAS call overhead and flops
        row_length = data.shape[0] * max(1, _ROW_BLOCK // data.shape[0]) if fortran else None
        rows_per_chunk = 2
    elif data.ndim == 2:
        if labels.shape != (data.shape[0],):
            raise ValueError(f"2D data (V, T) needs labels of shape ({data.shape[0]},)")
        data_vt, flat_labels, order = data, labels, "C"
        n_vox, n_time = data.shape
        row_length, rows_per_chunk = None, 1
    else:
        raise ValueError(f"data must be 2D, 3D or 4D, got shape {data.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    roi_labels, column, counts = _atlas_columns(labels, flat_labels, order, roi_labels)
    n_roi = len(roi_labels)
    if (counts == 0).any():
        raise ValueError(f"regions {roi_labels[counts == 0].tolist()} have no voxel")
    values = data_vt if data_vt.dtype == np.float64 else data_vt.astype(np.float32, copy=False)
    if not (values.flags.c_contiguous or values.flags.f_contiguous):
        values = np.ascontiguousarray(values)

    if compiled is None:
        compiled = values.size >= roi_kernel.MIN_ELEMENTS
    if roi_kernel.HAVE_NUMBA and compiled:
        # compiled, one pass in memory order over labelled voxels
        means = roi_kernel.region_sums(values, column, n_roi) / counts
        return means.astype(np.float32, copy=False)
    if values.flags.c_contiguous:  # (V, T) rows contiguous: sparse (R, V) @ (V, T)
        sums = column_plan(column, n_roi, values.dtype) @ values
    elif row_length is not None:  # (T, V) rows contiguous: one small product per x-row
        plan = row_plan(column, n_roi, row_length, rows_per_chunk)
        sums = region_sums_rows(values.T, plan, row_length)
    else:  # 2D (V, T) in Fortran order: no grid to find rows in
        sums = (values.T @ column_plan(column, n_roi, values.dtype).T).T
    means = np.asarray(sums).T / counts
    return means.astype(np.float32, copy=False)


def structural_features(
    t1: np.ndarray,
    labels: np.ndarray,
    roi_labels: np.ndarray,
    voxel_volume_mm3: float,
    tissue_threshold: float = 0.0,
) -> np.ndarray:
    """Per-region anatomy features, see :data:`FEATURE_NAMES`.

    Parameters
    ----------
    t1 : ndarray, shape (X, Y, Z)
        Normalised T1 on the atlas grid.
    labels : ndarray of int, shape (X, Y, Z)
    roi_labels : ndarray of int, shape (R,)
    voxel_volume_mm3 : float
        Volume of one voxel in mm^3.
    tissue_threshold : float
        Intensity above which a voxel counts as tissue.

    Returns
    -------
    ndarray of float32, shape (R, F)
    """
    flat_labels = labels.reshape(-1)
    flat = t1.reshape(-1).astype(np.float64)
    column = _column_index(flat_labels, np.asarray(roi_labels, dtype=np.int64))
    n_roi = len(roi_labels)
    inside = column < n_roi
    column, flat = column[inside], flat[inside]
    counts = np.bincount(column, minlength=n_roi).astype(np.float64)
    mean = np.bincount(column, weights=flat, minlength=n_roi) / counts
    var = np.bincount(column, weights=(flat - mean[column]) ** 2, minlength=n_roi) / counts
    order = np.lexsort((flat, column))  # by region, then intensity
    ranked = flat[order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    n = counts.astype(np.int64)
    median = 0.5 * (ranked[starts + (n - 1) // 2] + ranked[starts + n // 2])
    tissue = np.bincount(column, weights=flat > tissue_threshold, minlength=n_roi)
    features = np.stack(
        [mean, np.sqrt(var), median, tissue, tissue * voxel_volume_mm3, tissue / counts], axis=1
    )
    return features.astype(np.float32)


def _write_tsv(table: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="n/a", float_format="%.7g")


def write_tables(
    arrays: dict,
    out_timeseries: str | os.PathLike | None = None,
    out_relmat: str | os.PathLike | None = None,
    out_features: str | os.PathLike | None = None,
) -> None:
    """The BIDS-derivative TSVs of one parcellated subject (XCP-D convention), atomically.

    - ``out_timeseries``: one row per ORIGINAL volume, one column per ROI (header =
      ROI names); censored volumes are rows of ``n/a``, so row i is volume i.
    - ``out_relmat``: the connectivity matrix, first column ``Node`` (ROI names),
      then one column per ROI.
    - ``out_features``: one row per ROI, ``node`` then the structural features.

    ``arrays`` holds the ``.npz`` contents (:func:`parcellate_subject`).
    """
    names = [str(n) for n in arrays["roi_names"]]
    if out_timeseries is not None:
        full = np.full((int(arrays["n_volumes"]), len(names)), np.nan, dtype=np.float32)
        full[arrays["volume_index"]] = arrays["roi_timeseries"]
        _write_tsv(pd.DataFrame(full, columns=names), out_timeseries)
    if out_relmat is not None:
        relmat = pd.DataFrame(arrays["connectivity"], columns=names)
        relmat.insert(0, "Node", names)
        _write_tsv(relmat, out_relmat)
    if out_features is not None:
        features = pd.DataFrame(
            arrays["structural_features"], columns=[str(f) for f in arrays["feature_names"]]
        )
        features.insert(0, "node", names)
        _write_tsv(features, out_features)


def bold_roi_means(
    bold_path, atlas, labels: np.ndarray, roi_labels: np.ndarray, chunk_mb: float | None
) -> tuple[np.ndarray, float]:
    """The ROI means ``(T, R)`` of a preprocessed BOLD run on the atlas grid, and its TR:
    the whole run at once, or, when it exceeds ``chunk_mb``, chunks of volumes read in order
    (:func:`modalmerge.data.nifti_stream.open_run`), each summed as the whole run would be."""
    what = "preprocessed BOLD"
    if chunk_mb is not None:
        with open_run(bold_path, what) as run:
            plan = ChunkPlan.for_run(run.shape, labels.shape, 1, chunk_mb)  # volumes only
            if plan.volumes < run.shape[3]:
                check_same_grid(run.image, atlas, bold_path, what)
                compiled = int(np.prod(run.shape)) >= roi_kernel.MIN_ELEMENTS  # as if whole
                parts = [
                    roi_means(chunk, labels, roi_labels, compiled=compiled)
                    for _, chunk in run.volumes(plan.volumes)
                ]
                return np.concatenate(parts), read_tr(bold_path, run.image)
    bold = load_image(bold_path, ndim=4, what=what)
    check_same_grid(bold, atlas, bold_path, what)
    return roi_means(np.asanyarray(bold.dataobj), labels, roi_labels), read_tr(bold_path, bold)


def parcellate_subject(
    t1_path: str | os.PathLike,
    bold_path: str | os.PathLike | None,
    atlas_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    out_path: str | os.PathLike,
    params: ParcellateSettings | dict | None,
    out_timeseries: str | os.PathLike | None = None,
    out_relmat: str | os.PathLike | None = None,
    out_features: str | os.PathLike | None = None,
    chunk_mb: float | None = CHUNK_MB,
) -> None:
    """Write one subject's parcellated arrays (``.npz``) and their BIDS-derivative TSVs.

    Parameters
    ----------
    t1_path, bold_path : path-like
        Preprocessed T1 (3D) and BOLD (4D, TR in the header or sidecar), on the
        atlas grid. ``bold_path`` None (anatomy-only data): the file holds the
        structural features and ROI tables only — no ``roi_timeseries``,
        ``connectivity``, ``tr`` or ``connectivity_kind``.
    atlas_path : path-like
        3D integer label image.
    labels_path : path-like
        ``labels.tsv`` (index, name, x, y, z); its indices must be exactly the
        atlas's non-zero labels.
    out_path : path-like
        ``.npz`` written atomically with ``roi_timeseries`` (T, R) float32,
        ``connectivity`` (R, R) float32, ``structural_features`` (R, F) float32,
        ``feature_names`` (F,) str, ``roi_labels`` (R,) int32, ``roi_names``
        (R,) str, ``roi_coords`` (R, 3) float32 mm, ``tr`` (s),
        ``connectivity_kind`` str, ``volume_index`` (T,) int64 (the original
        index of each row: censored volumes are absent, see the BOLD sidecar's
        ``CensoredVolumes``) and ``n_volumes`` (the run's volumes before censoring).
        The shard stage reads this form (faster than the TSVs: docs/benchmarks.md).
    params : ParcellateSettings or dict
        :class:`modalmerge.settings.ParcellateSettings` (``connectivity``, see
        :data:`CONNECTIVITY_KINDS`; ``tissue_threshold``) or a ``parcellate:``
        mapping (defaults filled, unknown keys and bad values raise ValueError).
    out_timeseries, out_relmat, out_features : path-like, optional
        The same data as BIDS-derivative TSVs (:func:`write_tables`); the first
        two need a BOLD run. Outputs in a ``sub-<label>`` folder also get the
        derivative ``dataset_description.json``.
    chunk_mb : float, optional
        A run larger than this (MB per chunk, as ``preprocess.chunk_mb`` plans it:
        :class:`~modalmerge.data.bold_chunks.ChunkPlan`) is read in chunks of volumes, so
        the peak is bounded by the chunk, not the run; the ROI means are the same to the
        bit. None: always the whole run. Default: ``preprocess.chunk_mb``'s default.

    Raises
    ------
    modalmerge.io.InputError
        Broken or off-grid inputs, atlas/labels mismatch, constant regions.
    ValueError
        Bad ``params``.
    """
    # Over 60 lines: checks, ROI means, connectivity and the atomic writes in the order the outputs depend on them.
    params = ParcellateSettings.coerce(params)
    atlas, labels = load_labels(atlas_path, what="atlas")
    table = read_labels(labels_path, require_coordinates=True).sort_values("index")
    table = table.reset_index(drop=True)
    roi_labels = table["index"].to_numpy(dtype=np.int64)
    present = np.flatnonzero(np.bincount(labels.ravel()))
    present = present[present != 0]
    if not np.array_equal(present, roi_labels):
        absent = sorted(set(roi_labels.tolist()) - set(present.tolist()))
        unlisted = sorted(set(present.tolist()) - set(roi_labels.tolist()))
        raise InputError(
            labels_path,
            f"labels disagree with {Path(atlas_path).name}: listed but absent {absent[:10]}, "
            f"present but unlisted {unlisted[:10]}",
        )
    t1 = load_image(t1_path, ndim=3, what="preprocessed T1")
    check_same_grid(t1, atlas, t1_path, "preprocessed T1")
    function = {}
    if bold_path is not None:
        series, tr = bold_roi_means(bold_path, atlas, labels, roi_labels, chunk_mb)
        flat = roi_labels[np.ptp(series, axis=0) == 0]
        if flat.size:
            raise InputError(bold_path, f"regions {flat[:10].tolist()} have a constant time series")
        volume_index, n_volumes = read_censored_volumes(bold_path, series.shape[0])
        function = {
            "roi_timeseries": series,
            "connectivity": connectivity(series, params.connectivity).astype(np.float32),
            "tr": np.float64(tr),
            "connectivity_kind": np.array(params.connectivity),
            "volume_index": volume_index,
            "n_volumes": np.int64(n_volumes),
        }
    voxel_volume = float(np.prod(atlas.header.get_zooms()[:3]))
    features = structural_features(
        np.asanyarray(t1.dataobj), labels, roi_labels, voxel_volume, params.tissue_threshold
    )
    if bold_path is None and (out_timeseries is not None or out_relmat is not None):
        raise ValueError("time series and connectivity tables need a BOLD run")
    arrays = {
        **function,
        "structural_features": features,
        "feature_names": np.array(FEATURE_NAMES),
        "roi_labels": roi_labels.astype(np.int32),
        "roi_names": np.asarray(table["name"].astype(str).tolist(), dtype=str),  # no pickle
        "roi_coords": table[["x", "y", "z"]].to_numpy(dtype=np.float32),
    }
    write_tables(arrays, out_timeseries, out_relmat, out_features)
    with atomic_path(out_path) as tmp:
        np.savez(tmp, **arrays)
    write_dataset_description(out_path, "parcellate")
