"""Preprocess one subject: atlas grid, brain mask, cleaned BOLD, normalised anatomy.

Steps (nilearn does the signal processing):

1. Load the T1 (3D), the BOLD run (4D) and the atlas (3D labels); reject broken files.
2. Resample T1 and BOLD onto the atlas grid with
   :func:`nilearn.image.resample_to_img` (continuous interpolation), skipped when
   an image already lies on that grid.
3. Brain mask = atlas > 0. It is the same for every subject and exactly the set
   of voxels the parcellation averages, so cleaning never spends time outside
   the regions (an EPI mask from :func:`nilearn.masking.compute_epi_mask` would
   differ between subjects and could drop voxels of a region).
4. Clean the BOLD time series inside the mask with :func:`nilearn.signal.clean`:
   linear detrend, Butterworth band-pass (``high_pass``/``low_pass`` in Hz with
   the run's TR), optional confound regression, z-score per voxel
   (``standardize='zscore_sample'``). Voxels outside the mask are set to 0.
   Censoring: when the raw BOLD sidecar lists ``SampleMask`` (the volumes a
   confound strategy keeps, e.g. fMRIPrep ``scrubbing``), it is passed to
   ``clean(sample_mask=...)``: censored volumes are dropped (with a band-pass,
   after nilearn has filled them by interpolation from the kept volumes and
   filtered), so they influence nothing. The cleaned run holds
   only the kept volumes; its sidecar lists the dropped ones by their original
   index (``CensoredVolumes``), which parcellate and shard keep (docs/architecture.md).
5. Normalise the T1 intensities inside the mask: ``"robust_zscore"``
   ((x - median) / (1.4826 * MAD)), ``"median"`` (x / median), ``"bias_wm"`` (divided
   by a smooth bias field fitted to the white matter of the whole image and by the
   white-matter median: :func:`bias_field`) or ``"none"``; outside the mask 0.

The TR comes from the ``tr`` argument, else the BIDS sidecar
``*_bold.json`` (``RepetitionTime``, seconds), else the NIfTI header (when its
time unit is set); sidecar and header must agree. The written BOLD header
carries the TR in seconds, which the parcellate stage reads back, and the
written sidecar (``<out_bold>.json``) the TR and ``CensoredVolumes``. Outputs in a
``sub-<label>`` folder get a derivative ``dataset_description.json`` at the
derivative root (:mod:`modalmerge.data.derivatives`).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from modalmerge.data import checks
from modalmerge.data.bold_chunks import ChunkPlan
from modalmerge.data.derivatives import write_dataset_description
from modalmerge.data.nifti import load_image, load_labels, repetition_time, same_grid, save_image
from modalmerge.data.nifti_stream import open_run, write_run
from modalmerge.data.time_split import run_blocks
from modalmerge.io import InputError, atomic_path, require_file
from modalmerge.settings import PreprocessSettings, ShardSettings

__all__ = [
    "censored_volumes",
    "clean_run",
    "clean_signals",
    "preprocess_subject",
    "read_censored_volumes",
    "read_sample_mask",
    "read_tr",
]


def _sidecar_path(bold_path: Path) -> Path:
    name = bold_path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return bold_path.with_name(name + ".json")


def read_tr(bold_path: str | os.PathLike, img: nib.Nifti1Image, tr: float | None = None) -> float:
    """Return the repetition time of a BOLD run in seconds.

    Sources, by priority: ``tr``; the BIDS sidecar (``<run>.json`` beside the
    NIfTI, key ``RepetitionTime``); the header's pixdim[4] when its time unit is
    set. Any two sources present must agree within 0.1 %
    (:func:`modalmerge.data.nifti.repetition_time`, the one TR reader).

    Raises
    ------
    modalmerge.io.InputError
        No source gives a TR, the sidecar is unreadable, or the sources disagree.
    """
    bold_path = Path(bold_path)
    sidecar, value = _sidecar_path(bold_path), None
    if sidecar.exists():
        try:
            value = json.loads(sidecar.read_text()).get("RepetitionTime")
            value = None if value is None else float(value)
        except (ValueError, TypeError, AttributeError) as exc:
            raise InputError(sidecar, f"unreadable BIDS sidecar ({exc})") from None
    return repetition_time(bold_path, img, {"tr argument": tr, f"sidecar {sidecar.name}": value})


def read_sample_mask(bold_path: str | os.PathLike, n_volumes: int) -> np.ndarray | None:
    """Kept volume indices from the raw BOLD sidecar's ``SampleMask``, or None (no censoring).

    Raises
    ------
    modalmerge.io.InputError
        The mask is not a list of distinct volume indices of the run, or keeps
        fewer than 3 volumes.
    """
    sidecar = _sidecar_path(Path(bold_path))
    if not sidecar.exists():
        return None
    try:
        value = json.loads(sidecar.read_text()).get("SampleMask")
    except (ValueError, AttributeError) as exc:
        raise InputError(sidecar, f"unreadable BIDS sidecar ({exc})") from None
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in value
    ):
        raise InputError(sidecar, "SampleMask must be a list of volume indices")
    mask = np.asarray(value, dtype=np.int64)
    if mask.size and (mask.min() < 0 or mask.max() >= n_volumes):
        raise InputError(sidecar, f"SampleMask indexes volumes outside 0..{n_volumes - 1}")
    if np.unique(mask).size != mask.size:
        raise InputError(sidecar, "SampleMask lists a volume twice")
    if mask.size < 3:
        raise InputError(sidecar, f"SampleMask keeps {mask.size} volumes; need at least 3")
    if mask.size == n_volumes:
        return None  # nothing censored
    return np.sort(mask)


def read_censored_volumes(bold_path: str | os.PathLike, n_kept: int) -> tuple[np.ndarray, int]:
    """Original volume index of each volume of a cleaned run, and the run's volumes
    before censoring (from its sidecar's ``CensoredVolumes``; ``(arange(n_kept),
    n_kept)`` when the sidecar lists none).

    Raises
    ------
    modalmerge.io.InputError
        The sidecar's list is not one of distinct non-negative integers.
    """
    sidecar = _sidecar_path(Path(bold_path))
    censored = []
    if sidecar.exists():
        try:
            censored = json.loads(sidecar.read_text()).get("CensoredVolumes") or []
        except (ValueError, AttributeError) as exc:
            raise InputError(sidecar, f"unreadable BIDS sidecar ({exc})") from None
    if not isinstance(censored, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in censored
    ):
        raise InputError(sidecar, "CensoredVolumes must be a list of volume indices")
    if len(set(censored)) != len(censored):
        raise InputError(sidecar, "CensoredVolumes lists a volume twice")
    n_volumes = n_kept + len(censored)
    if censored and max(censored) >= n_volumes:
        raise InputError(sidecar, f"CensoredVolumes beyond the run's {n_volumes} volumes")
    kept = np.setdiff1d(np.arange(n_volumes), np.asarray(censored, dtype=np.int64))
    return kept, n_volumes


def censored_volumes(sample_mask: np.ndarray | None, n_volumes: int) -> list[int]:
    """Original indices of the volumes a sample mask drops (empty without a mask)."""
    if sample_mask is None:
        return []
    return np.setdiff1d(np.arange(n_volumes), sample_mask).tolist()


def clean_signals(
    signals: np.ndarray,
    tr: float,
    *,
    detrend: bool,
    standardize: bool,
    low_pass: float | None,
    high_pass: float | None,
    confounds: np.ndarray | None = None,
    sample_mask: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`nilearn.signal.clean` with the stage's settings.

    Parameters
    ----------
    signals : ndarray, shape (T, V)
    tr : float
        Repetition time in seconds.
    detrend, standardize : bool
        Linear detrend; z-score each column (``zscore_sample``).
    low_pass, high_pass : float or None
        Butterworth cut-offs in Hz.
    confounds : ndarray, shape (T, n_confounds), optional
    sample_mask : ndarray of int, optional
        Kept volume indices. Censored volumes are dropped (with a band-pass,
        after nilearn fills them by interpolation and filters): they do not
        influence the result.

    Notes
    -----
    The band-pass filters all columns in one vectorised ``sosfiltfilt`` call
    (``butterworth__copy=True``) and keeps its float64 result up to the end.
    nilearn's default filters column by column in place, which on a float32
    chunk rounds every filtered series to float32 before confound removal and
    standardising, and costs one Python-level call per voxel (the filter about
    40x slower on a default subject's chunk, the whole stage 7.4 s against
    1.8 s: ``benchmarks/bench_preprocess_memory.py``). The filter's float64
    copies of the chunk (about four) are what
    :class:`~modalmerge.data.bold_chunks.ChunkPlan` budgets for.

    Returns
    -------
    ndarray, shape (T_kept, V)
        Only the kept volumes when ``sample_mask`` is given.
    """
    from nilearn.signal import clean

    return clean(
        signals,
        detrend=detrend,
        standardize="zscore_sample" if standardize else None,  # None: nilearn 0.15 drops False
        confounds=confounds,
        sample_mask=sample_mask,
        low_pass=low_pass,
        high_pass=high_pass,
        t_r=tr,
        ensure_finite=False,
        butterworth__copy=True,  # one vectorised filter call, not one per voxel (Notes)
    )


def clean_run(
    signals: np.ndarray,
    tr: float,
    params: PreprocessSettings,
    confounds: np.ndarray | None,
    sample_mask: np.ndarray | None,
    blocks: dict[str, tuple[int, int]] | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Clean a run ``(T, V)`` as a whole, or each block ``[start, stop)`` on its own.

    With ``blocks`` every statistic (trend, filter state, confound betas, mean
    and SD) comes from the block's own volumes, so changing one block's data
    changes no other block's output; volumes outside every block are dropped.
    Returns the cleaned kept volumes and their original indices (None: all kept).
    """
    settings = dict(
        detrend=params.detrend,
        standardize=params.standardize,
        low_pass=params.low_pass,
        high_pass=params.high_pass,
    )
    if blocks is None:
        cleaned = clean_signals(
            signals, tr, confounds=confounds, sample_mask=sample_mask, **settings
        )
        return cleaned, sample_mask
    n_volumes = signals.shape[0]
    kept = np.arange(n_volumes) if sample_mask is None else np.asarray(sample_mask)
    parts, indices = [], []
    for start, stop in sorted(blocks.values()):
        inside = kept[(kept >= start) & (kept < stop)]
        mask = None if len(inside) == stop - start else inside - start
        parts.append(
            clean_signals(
                signals[start:stop],
                tr,
                confounds=None if confounds is None else confounds[start:stop],
                sample_mask=mask,
                **settings,
            )
        )
        indices.append(inside)
    index = np.concatenate(indices)
    return np.concatenate(parts), (None if len(index) == n_volumes else index)


def _read_confounds(path: str | os.PathLike, n_volumes: int) -> np.ndarray:
    """Confounds TSV (one row per volume, numeric columns) as (T, n_confounds) float64."""
    path = require_file(path, "confounds TSV")
    try:
        table = pd.read_csv(path, sep="\t", na_values=["n/a", "NA", ""])
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(path, f"unreadable confounds TSV ({exc})") from None
    if len(table) != n_volumes:
        raise InputError(path, f"{len(table)} confound rows for {n_volumes} BOLD volumes")
    non_numeric = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if non_numeric:
        raise InputError(path, f"non-numeric confound columns {non_numeric}")
    # derivatives such as framewise displacement are undefined at the first volume
    values = table.fillna(table.mean()).to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise InputError(path, "confound column with no finite value")
    return values


def _to_grid(
    img: nib.Nifti1Image, atlas: nib.Nifti1Image, interpolation: str = "continuous"
) -> nib.Nifti1Image:
    if same_grid(img, atlas):
        return img
    from nilearn.image import resample_to_img  # lazy: parcellate imports this module for read_tr

    return resample_to_img(
        img, atlas, interpolation=interpolation, force_resample=True, copy_header=True
    )


BIAS_DEGREE = 2  # degree of the log-polynomial bias field
BIAS_ITERATIONS = 4  # white-matter reselections of the bias fit
BIAS_WM_QUANTILE = 0.85  # first white-matter guess: voxels above this quantile of the head


def bias_field(t1: np.ndarray) -> np.ndarray:
    """A smooth multiplicative bias field of ``t1`` (X, Y, Z), mean log 0 over white matter.

    A parametric bias model (a polynomial of degree ``BIAS_DEGREE`` in the voxel
    coordinates, fitted by least squares to log intensities of the white matter, the
    brightest and most uniform tissue of a T1; Styner et al. 2000, IEEE TMI 19(3):153):
    white matter is first guessed as the voxels above the ``BIAS_WM_QUANTILE`` quantile
    of the non-zero image, then reselected ``BIAS_ITERATIONS`` times as the corrected
    voxels within 10 % of the corrected white-matter median. Written by hand (about 20
    lines of numpy) rather than N4 from SimpleITK, a 50 MB dependency for one fit.

    Raises
    ------
    ValueError
        When the image has too few positive voxels to fit the field.
    """
    data = np.asarray(t1, dtype=np.float64)
    positive = data > 0
    if positive.sum() < 50:
        raise ValueError("too few positive voxels to fit a bias field")
    axes = [np.linspace(-1.0, 1.0, n) for n in data.shape]
    grid = np.meshgrid(*axes, indexing="ij")
    powers = [e for e in np.ndindex(*(BIAS_DEGREE + 1,) * data.ndim) if 0 < sum(e) <= BIAS_DEGREE]
    basis = np.stack(
        [np.prod([g**k for g, k in zip(grid, e, strict=True)], axis=0) for e in powers]
    )
    log_image = np.log(np.where(positive, data, 1.0))
    wm = positive & (data >= np.quantile(data[positive], BIAS_WM_QUANTILE))
    field = np.zeros(data.shape)
    for _ in range(BIAS_ITERATIONS):
        design = np.column_stack([np.ones(wm.sum()), basis[:, wm].T])
        coef, *_ = np.linalg.lstsq(design, log_image[wm], rcond=None)
        field = np.tensordot(coef[1:], basis, axes=(0, 0))
        corrected = np.where(positive, data / np.exp(field), 0.0)
        centre = np.median(corrected[wm])
        wm = positive & (np.abs(corrected - centre) <= 0.1 * centre)
    return np.exp(field - field[wm].mean())


def normalize_anatomy(t1: np.ndarray, mask: np.ndarray, method: str) -> np.ndarray:
    """Normalise T1 intensities using statistics inside ``mask``.

    Parameters
    ----------
    t1 : ndarray, shape (X, Y, Z)
    mask : ndarray of bool, shape (X, Y, Z)
    method : {"robust_zscore", "median", "bias_wm", "none"}
        ``bias_wm``: divided by :func:`bias_field` (fitted on the whole image, not only
        the mask) and by the corrected white-matter median, so white matter reads 1 and
        a region's grey matter its T1 intensity relative to white matter.

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        Normalised intensities (dimensionless), 0 outside the mask.
    """
    inside = t1[mask].astype(np.float64)
    out = np.zeros(t1.shape, dtype=np.float32)
    if inside.size == 0:
        raise ValueError("the brain mask is empty")
    if method == "robust_zscore":
        median = np.median(inside)
        scale = 1.4826 * np.median(np.abs(inside - median))
        if scale <= 0:
            scale = inside.std() or 1.0
        inside = (inside - median) / scale
    elif method == "bias_wm":
        corrected = np.asarray(t1, dtype=np.float64) / bias_field(t1)
        positive = corrected > 0
        bright = corrected >= np.quantile(corrected[positive], BIAS_WM_QUANTILE)
        centre = np.median(corrected[bright])
        wm = positive & (np.abs(corrected - centre) <= 0.1 * centre)
        inside = corrected[mask] / np.median(corrected[wm])
    elif method == "median":
        median = np.median(inside)
        if median == 0:
            raise ValueError("brain median intensity is 0; cannot divide by it")
        inside = inside / median
    out[mask] = inside
    return out


def _save_anatomy(data: np.ndarray, atlas, out) -> None:
    """A 3D image on the atlas grid (mm units), written atomically."""
    image = nib.Nifti1Image(data, atlas.affine)
    image.header.set_xyzt_units("mm")
    save_image(image, out)


def _write_t1(t1, atlas, mask, params: PreprocessSettings, out_t1) -> None:
    """The T1 (or another contrast) on the atlas grid, normalised inside the mask."""
    t1 = _to_grid(t1, atlas)
    data = normalize_anatomy(np.asanyarray(t1.dataobj), mask, params.normalize_anatomy)
    _save_anatomy(data, atlas, out_t1)


def _write_extra_anatomy(extra, labels: set, atlas, mask, params: PreprocessSettings) -> None:
    """Further anatomy images onto the atlas grid: contrasts normalised like the T1, label
    images (segmentations) resampled nearest-neighbour and kept as integer labels."""
    for name, src, out in extra:
        img = load_image(src, ndim=3, what=f"{name} image")
        if name not in labels:
            _write_t1(img, atlas, mask, params, out)
            continue
        values = np.asanyarray(img.dataobj)
        if not np.array_equal(values, np.round(values)):
            raise InputError(src, f"label image {name} holds non-integer values")
        resampled = _to_grid(img, atlas, interpolation="nearest")
        _save_anatomy(np.rint(np.asanyarray(resampled.dataobj)).astype(np.float32), atlas, out)


def _gather_on_grid(run, atlas, mask: np.ndarray, signals, per_chunk: int) -> np.ndarray:
    """Each chunk of ``per_chunk`` volumes onto the atlas grid, its in-mask voxels into
    ``signals[:, t0:t1]`` (V_mask, T); returns the run's mean volume (float64, input grid)."""
    total = np.zeros(run.shape[:3], np.float64)
    for start, chunk in run.volumes(per_chunk):  # (X, Y, Z, t) float32
        total += chunk.sum(axis=3, dtype=np.float64)
        on_grid = _to_grid(nib.Nifti1Image(chunk, run.affine, header=run.image.header), atlas)
        signals[:, start : start + chunk.shape[3]] = np.asanyarray(on_grid.dataobj)[mask]
    return total / run.shape[3]


def _clean_in_place(signals, per_chunk: int, tr, params, confounds, sample_mask, blocks):
    """Clean ``per_chunk`` voxels at a time (all time points at once, as nilearn needs; each
    time block on its own when ``blocks`` is given, see :func:`clean_run`); the cleaned series
    overwrite ``signals[v0:v1, :T_kept]``. Returns T_kept and the kept volumes' original
    indices (None: all kept)."""
    n_voxels, n_kept = signals.shape[0], signals.shape[1]
    kept = sample_mask
    for v0 in range(0, n_voxels, per_chunk):
        v1 = min(v0 + per_chunk, n_voxels)
        # (T_kept, v); the kept indices depend on the mask and blocks only, not on the voxels
        cleaned, kept = clean_run(signals[v0:v1].T, tr, params, confounds, sample_mask, blocks)
        n_kept = cleaned.shape[0]
        signals[v0:v1, :n_kept] = cleaned.T
    return n_kept, kept


def _write_bold(signals, n_kept: int, mask, atlas, tr: float, per_chunk: int, out_bold) -> None:
    """The cleaned run (float32 on the atlas grid, 0 outside the mask), ``per_chunk`` volumes at
    a time, atomically."""
    with write_run(out_bold, atlas.affine, (*mask.shape, n_kept), tr) as write:
        for t0 in range(0, n_kept, per_chunk):
            t1 = min(t0 + per_chunk, n_kept)
            volumes = np.zeros((*mask.shape, t1 - t0), dtype=np.float32, order="F")
            volumes[mask] = signals[:, t0:t1]
            write(volumes)


def preprocess_subject(
    t1_path: str | os.PathLike,
    bold_path: str | os.PathLike | None,
    atlas_path: str | os.PathLike,
    out_t1: str | os.PathLike,
    out_bold: str | os.PathLike | None,
    params: PreprocessSettings | dict | None,
    tr: float | None = None,
    confounds_path: str | os.PathLike | None = None,
    extra_anatomy=(),
    label_anatomy=(),
    time_split: ShardSettings | dict | None = None,
) -> None:
    """Put one subject's T1 and BOLD on the atlas grid, clean the BOLD, normalise the T1.

    Parameters
    ----------
    t1_path : path-like
        T1-weighted image, 3D.
    bold_path : path-like or None
        BOLD run, 4D (X, Y, Z, T); its TR comes from ``tr``, the ``_bold.json``
        sidecar or the header (see :func:`read_tr`). None for anatomy-only
        data (ADNI, BraTS): only the T1 is written.
    atlas_path : path-like
        3D integer label image defining the output grid and the brain mask (> 0).
    out_t1, out_bold : path-like
        Outputs (``.nii.gz``), float32 on the atlas grid, written atomically.
        The BOLD header stores the TR in seconds; a sidecar ``<out_bold>.json``
        holds ``RepetitionTime`` and ``CensoredVolumes`` (original indices of
        the volumes the raw sidecar's ``SampleMask`` drops; the written run
        holds the others only). ``out_bold`` is None exactly when ``bold_path`` is.
    params : PreprocessSettings or dict
        :class:`modalmerge.settings.PreprocessSettings` (``detrend``,
        ``high_pass``/``low_pass`` in Hz or None, ``standardize``,
        ``normalize_anatomy``), or a ``preprocess:`` mapping: missing keys take
        the settings' defaults, unknown keys and bad values raise ValueError.
    tr : float, optional
        Repetition time in seconds, overriding (and checked against) the files.
    confounds_path : path-like, optional
        TSV with one row per volume of nuisance regressors ("n/a" allowed).
    extra_anatomy : sequence of (name, in_path, out_path)
        Further 3D anatomy images (BraTS: ``ce-gd_T1w``, ``T2w``, ``FLAIR``,
        ``dseg``) put on the atlas grid: contrasts normalised like the T1.
    label_anatomy : sequence of str
        Names among ``extra_anatomy`` that are label images: resampled
        nearest-neighbour, integer values required, never normalised.
    time_split : ShardSettings or dict, optional
        The ``shard:`` settings when they split runs in time (``split_by:
        time``): each block (:func:`modalmerge.data.time_split.run_blocks`) is
        cleaned on its own, as a run of its own (detrend, filter, confounds,
        z-score fitted within the block), and the gap volumes between blocks
        are dropped like censored volumes (listed in ``CensoredVolumes``; the
        sidecar's ``TimeBlocks`` gives the blocks). Ignored (whole-run
        cleaning) for ``split_by: subject`` or None.

    Raises
    ------
    modalmerge.io.InputError
        Missing/corrupt inputs, wrong dimensionality, NaN voxels, missing or
        inconsistent TR, bad confounds; the message names the file.
    ValueError
        Bad ``params`` or a low-pass at or above the Nyquist frequency.
    """
    # Over 60 lines: checks, resampling, cleaning and atomic writes in one pass, freeing each large array once used.
    params = PreprocessSettings.coerce(params)
    atlas, labels = load_labels(atlas_path, what="atlas")
    mask = labels > 0
    if not mask.any():
        raise InputError(atlas_path, "atlas has no labelled voxel")
    if (bold_path is None) != (out_bold is None):
        raise ValueError("give both bold_path and out_bold, or neither (anatomy only)")
    unknown = set(label_anatomy) - {name for name, _, _ in extra_anatomy}
    if unknown:
        raise ValueError(f"label image(s) {sorted(unknown)} are not among the extra anatomy")
    t1 = load_image(t1_path, ndim=3, what="T1 image")
    _write_extra_anatomy(extra_anatomy, set(label_anatomy), atlas, mask, params)
    if bold_path is None:
        if confounds_path is not None:
            raise ValueError("confounds need a BOLD run")
        _write_t1(t1, atlas, mask, params, out_t1)
        write_dataset_description(out_t1, "preprocess")
        return
    with (
        open_run(bold_path, what="BOLD run") as run,
        tempfile.TemporaryDirectory(prefix="modalmerge-preprocess-") as scratch,
    ):
        n_volumes = run.shape[3]
        if n_volumes < 3:
            raise InputError(bold_path, f"BOLD run has {n_volumes} volumes; need at least 3")
        tr = read_tr(bold_path, run.image, tr)
        checks.check_run_settings(bold_path, n_volumes, tr, params, time_split)  # before scipy
        sample_mask = read_sample_mask(bold_path, n_volumes)
        blocks = run_blocks(n_volumes, time_split)
        confounds = None if confounds_path is None else _read_confounds(confounds_path, n_volumes)
        plan = ChunkPlan.for_run(run.shape, labels.shape, int(mask.sum()), params.chunk_mb)
        with plan.signals(scratch) as signals:  # (V_mask, T): in memory or a scratch HDF5
            mean = _gather_on_grid(run, atlas, mask, signals, plan.volumes)
            mean_img = nib.Nifti1Image(mean, run.affine)
            checks.check_overlap(
                bold_path, mean_img, t1_path, t1, atlas_path, atlas, labels, params.min_overlap
            )
            _write_t1(t1, atlas, mask, params, out_t1)
            del t1
            n_kept, sample_mask = _clean_in_place(
                signals, plan.voxels, tr, params, confounds, sample_mask, blocks
            )
            _write_bold(signals, n_kept, mask, atlas, tr, plan.volumes, out_bold)
    sidecar = {
        "RepetitionTime": tr,
        "CensoredVolumes": censored_volumes(sample_mask, n_volumes),
        "Sources": [str(bold_path)],
    }
    if blocks is not None:  # each block cleaned on its own (split_by: time)
        sidecar["TimeBlocks"] = {name: list(span) for name, span in blocks.items()}
    with atomic_path(_sidecar_path(Path(out_bold))) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
    write_dataset_description(out_t1, "preprocess")
