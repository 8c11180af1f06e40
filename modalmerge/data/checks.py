"""Input checks a careful neuroimager expects, before any data is processed.

Each check raises :class:`modalmerge.io.InputError` with one line that names the
user's file (a ``raw/`` symlink is resolved to the file it points at), the value
found and the value needed. Only numpy and nibabel are used here, so the checks
are cheap to import when the workflow's DAG is built.

- :func:`check_header`: the header against the file's size (a header claiming
  absurd dimensions fails before a byte of data is decoded), and finite,
  plausible dimensions, voxel sizes and affine.
- :func:`check_not_constant`: a run whose voxels never change over time.
- :func:`check_run_settings`: a run long enough for the band-pass filter and
  the shard window, and a TR whose Nyquist frequency lies above the low-pass.
- :func:`check_overlap`: the BOLD brain extent against the T1's and the
  atlas's, in world (mm) coordinates.
- :func:`check_subject_label`: a subject id is ``sub-`` + a BIDS label.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from modalmerge.io import InputError
from modalmerge.settings import PreprocessSettings, ShardSettings

__all__ = [
    "BUTTERWORTH_ORDER",
    "MAX_DIM",
    "VOXEL_MM",
    "check_header",
    "check_not_constant",
    "check_overlap",
    "check_run_settings",
    "check_safe_name",
    "check_subject_label",
    "filter_min_volumes",
    "user_path",
]

#: Largest accepted size of one image axis. NIfTI-1 stores dims as int16 (< 32768);
#: a surface run travels as a (vertices, 1, 1, T) image (fsaverage5: 20484), so the
#: bound is 10^5 rather than the 10^4 a volume would need.
MAX_DIM = 100_000
#: Plausible voxel edge lengths in mm (exclusive bounds): from ex-vivo 0.1 mm to 20 mm.
VOXEL_MM = (0.1, 20.0)
#: Deflate cannot compress better than about 1032:1, so a .nii.gz of ``n`` bytes
#: holds at most ``1032 * n`` bytes (plus the header slack below).
_DEFLATE_MAX_RATIO = 1032
#: nilearn.signal.clean's Butterworth filter order (``butterworth(..., order=5)``).
BUTTERWORTH_ORDER = 5

_LABEL = re.compile(r"sub-[A-Za-z0-9]+")


def user_path(path: str | os.PathLike) -> Path:
    """The file a path points at: ``raw/`` holds symlinks to the user's files."""
    path = Path(path)
    try:
        return path.resolve() if path.is_symlink() else path
    except OSError:
        return path


# --------------------------------------------------------------------------- header


def _gzip_isize(path: Path) -> int:
    """The gzip trailer's ISIZE: the uncompressed size of the LAST member, modulo 2**32."""
    with open(path, "rb") as fh:
        fh.seek(-4, os.SEEK_END)
        return int.from_bytes(fh.read(4), "little")


def _stream_size(path: Path, limit: int) -> int:
    """Decompressed size by streaming (nothing is kept), stopping once ``limit`` is reached."""
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while total < limit:
                chunk = stream.read(min(1 << 24, limit - total))
                if not chunk:
                    break
                total += len(chunk)
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(user_path(path), f"truncated or corrupt gzip stream ({err})") from None
    return total


def data_size(path: Path, needed: int) -> int:
    """Bytes the image file holds after decompression, compared with ``needed``.

    For ``.nii.gz`` the cheap answer is the gzip trailer (ISIZE, the size
    modulo 2**32 of the last gzip member). It is trusted when it already
    covers ``needed``; a claim beyond what deflate's ~1032:1 maximum ratio
    allows fails at once; otherwise (files over 4 GiB, multi-member gzip,
    a truncated stream) the stream is decompressed and counted, never kept.
    """
    size = path.stat().st_size
    if not path.name.endswith(".gz"):
        return size
    if size < 18:  # smaller than an empty gzip member
        return 0
    isize = _gzip_isize(path)
    if isize >= needed:
        return isize
    bound = _DEFLATE_MAX_RATIO * size + 1024
    if needed > bound:
        return isize  # impossible whatever the trailer says: no decompression needed
    return _stream_size(path, needed)


def check_header(path: str | os.PathLike, img: nib.spatialimages.SpatialImage) -> None:
    """Header sanity, before any voxel is read.

    Requires every dimension in ``[1, MAX_DIM]``; the affine finite and
    invertible; voxel edge lengths (the affine's column norms) within
    :data:`VOXEL_MM`; and ``vox_offset + prod(dims) * bytes per voxel`` bytes
    in the (decompressed) file.
    """
    path = Path(path)
    shown = user_path(path)
    shape = tuple(int(d) for d in img.shape)
    if not shape or any(d < 1 or d > MAX_DIM for d in shape):
        raise InputError(shown, f"implausible dimensions {shape} (each must be 1..{MAX_DIM})")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all():
        raise InputError(shown, "the affine holds NaN or inf")
    voxel = np.linalg.norm(affine[:3, :3], axis=0)
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(shown, f"the affine is singular (voxel sizes {np.round(voxel, 4)} mm)")
    low, high = VOXEL_MM
    if not ((voxel > low) & (voxel < high)).all():
        raise InputError(
            shown,
            f"implausible voxel size {tuple(round(float(v), 4) for v in voxel)} mm "
            f"(each must be in ({low:g}, {high:g}) mm)",
        )
    header = img.header
    if not isinstance(header, nib.Nifti1Header) or not path.name.endswith((".nii", ".nii.gz")):
        return  # Nifti2Header is a subclass; a .hdr/.img pair keeps its data elsewhere
    # single-file NIfTI: data start at vox_offset, never before the header + 4 extension bytes
    offset = max(int(header["vox_offset"]), header.sizeof_hdr + 4)
    needed = offset + math.prod(shape) * header.get_data_dtype().itemsize
    found = data_size(path, needed)
    if found < needed:
        what = "decompressed size" if path.name.endswith(".gz") else "size"
        raise InputError(
            shown,
            f"header claims {shape} x {header.get_data_dtype()} = {needed} bytes "
            f"but the file's {what} is {found} bytes",
        )


# --------------------------------------------------------------------------- voxels


def check_not_constant(path: str | os.PathLike, data: np.ndarray, rtol: float = 1e-6) -> None:
    """A 4D run whose every voxel is (near) constant over time, or a 3D image with one value.

    Near constant: the largest temporal range of any voxel is at most ``rtol``
    times the largest absolute value (a run of pure float32 rounding noise).
    """
    if data.size == 0:
        return
    scale = float(np.max(np.abs(data))) or 1.0
    if data.ndim == 4 and data.shape[3] > 1:
        spread = float(np.max(np.ptp(data, axis=3)))
        check_temporal_range(path, spread, scale, data.shape[3], rtol)
    elif data.ndim == 3 or (data.ndim == 4 and data.shape[3] == 1):
        if float(np.ptp(data)) <= rtol * scale:
            raise InputError(user_path(path), f"every voxel holds the same value {data.flat[0]:g}")


def check_temporal_range(
    path: str | os.PathLike, spread: float, scale: float, n_volumes: int, rtol: float = 1e-6
) -> None:
    """Refuse a run whose largest temporal range of any voxel (``spread``) is at most
    ``rtol`` times its largest absolute value (``scale``): every voxel is constant.
    (Streamed readers accumulate ``spread`` and ``scale`` block by block.)"""
    if n_volumes > 1 and spread <= rtol * (scale or 1.0):
        raise InputError(
            user_path(path),
            f"every voxel is constant over time (largest range {spread:.3g} over "
            f"{n_volumes} volumes): not a BOLD signal",
        )


# --------------------------------------------------------------------------- settings


def filter_min_volumes(high_pass: float | None, low_pass: float | None) -> int:
    """Fewest volumes nilearn's Butterworth band-pass accepts (0 when no filter).

    nilearn.signal.clean filters with ``scipy.signal.sosfiltfilt`` on an order-5
    Butterworth design, whose default ``padlen`` is
    ``3 * (2 * n_sections + 1 - n_first_order)``, and the run must be longer
    than ``padlen``: a low- or high-pass alone has 3 sections, one of them
    first order (padlen 18, 19 volumes); a band-pass has 5 second-order
    sections (padlen 33, 34 volumes).
    """
    if high_pass is None and low_pass is None:
        return 0
    if high_pass is not None and low_pass is not None:
        poles = 2 * BUTTERWORTH_ORDER
    else:
        poles = BUTTERWORTH_ORDER
    sections = (poles + 1) // 2
    first_order = poles % 2
    return 3 * (2 * sections + 1 - first_order) + 1


def check_run_settings(
    path: str | os.PathLike,
    n_volumes: int,
    tr: float,
    preprocess: PreprocessSettings | dict | None = None,
    shard: ShardSettings | dict | None = None,
) -> None:
    """Require the run to suit the settings: TR vs the cutoffs, length vs filter and window.

    Parameters
    ----------
    path : path-like
        The BOLD run (named in errors).
    n_volumes : int
        Its number of volumes.
    tr : float
        Its repetition time in seconds.
    preprocess : PreprocessSettings or mapping, optional
        ``high_pass``/``low_pass`` in Hz (None = off); the defaults when not given.
    shard : ShardSettings or mapping, optional
        ``window``: volumes per sample; not checked when not given (the
        DAG-build check passes the shard settings). With ``split_by: time``
        every block must also be long enough for the filter (each block is
        cleaned on its own).
    """
    shown = user_path(path)
    preprocess = PreprocessSettings.coerce(preprocess or {})
    high, low = preprocess.high_pass, preprocess.low_pass
    nyquist = 0.5 / tr
    for name, value in (("low_pass", low), ("high_pass", high)):
        if value is not None and value >= nyquist:
            raise InputError(
                shown,
                f"TR {tr:g} s gives a Nyquist frequency of {nyquist:.4g} Hz; "
                f"preprocess.{name} {value:g} Hz needs it above (a TR below {0.5 / value:.4g} s)",
            )
    needed = filter_min_volumes(high, low)
    if needed and n_volumes < needed:
        kind = "band-pass" if high is not None and low is not None else "temporal"
        raise InputError(
            shown,
            f"{n_volumes} volumes; the {kind} filter (preprocess.high_pass {high}, "
            f"low_pass {low}) needs at least {needed}",
        )
    window = None if shard is None else ShardSettings.coerce(shard).window
    common = None if shard is None else ShardSettings.coerce(shard).tr
    if window is not None and common is not None:  # windows count volumes of shard.tr
        from modalmerge.data.resample import resampled_length

        try:
            n_common = resampled_length(n_volumes, tr, common)
        except ValueError as exc:
            raise InputError(shown, str(exc)) from None
        if n_common < window:
            raise InputError(
                shown,
                f"{n_volumes} volumes at TR {tr:g} s are {n_common} at shard.tr {common:g} s; "
                f"shard.window needs at least {window}",
            )
    elif window is not None and n_volumes < window:
        raise InputError(
            shown, f"{n_volumes} volumes; shard.window needs at least {window} per run"
        )
    _check_blocks(shown, n_volumes, needed, shard)


def _check_blocks(shown, n_volumes: int, needed: int, shard) -> None:
    """split_by time: every block is cleaned on its own, so each must suit the filter."""
    from modalmerge.data.time_split import run_blocks

    try:
        blocks = run_blocks(n_volumes, shard)
    except ValueError as exc:
        raise InputError(shown, str(exc)) from None
    for name, (start, stop) in (blocks or {}).items():
        if needed and stop - start < needed:
            raise InputError(
                shown,
                f"split_by time: the {name} block has {stop - start} volumes; preprocess "
                f"cleans each block on its own and its filter needs at least {needed}",
            )


# --------------------------------------------------------------------------- space


def _mean_volume(data: np.ndarray) -> np.ndarray:
    data = np.asarray(data)
    if data.ndim == 4:
        return np.abs(data.mean(axis=3, dtype=np.float64))
    return np.abs(np.asarray(data, dtype=np.float64))


def _fill(mask: np.ndarray) -> np.ndarray:
    """Fill a mask's holes along each axis: a voxel between two masked voxels on all three
    axes is inside (white matter between labelled cortex, dark ventricles)."""
    filled = np.ones(mask.shape, bool)
    for axis in range(3):
        fwd = np.maximum.accumulate(mask, axis=axis)
        back = np.flip(np.maximum.accumulate(np.flip(mask, axis=axis), axis=axis), axis=axis)
        filled &= fwd & back
    return filled


def head_mask(data: np.ndarray) -> np.ndarray:
    """A cheap brain/head mask: mean intensity above 20 % of its 98th percentile, filled."""
    volume = _mean_volume(data)
    positive = volume[volume > 0]
    if positive.size == 0:
        return np.zeros(volume.shape, bool)
    threshold = 0.2 * float(np.percentile(positive, 98))
    return _fill(volume > threshold)


def _points(mask: np.ndarray, affine: np.ndarray, max_points: int = 20000) -> np.ndarray:
    """World (mm) coordinates of up to ``max_points`` evenly strided mask voxels, (N, 3)."""
    ijk = np.argwhere(mask)
    if len(ijk) > max_points:
        ijk = ijk[:: int(np.ceil(len(ijk) / max_points))]
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def fraction_inside(points: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> float:
    """Fraction of world points that fall in ``mask`` (outside its grid counts as outside)."""
    if len(points) == 0:
        return 0.0
    inv = np.linalg.inv(affine)
    ijk = np.rint(points @ inv[:3, :3].T + inv[:3, 3]).astype(np.int64)
    inside = np.all((ijk >= 0) & (ijk < np.array(mask.shape[:3])), axis=1)
    hits = np.zeros(len(points), bool)
    hits[inside] = mask[tuple(ijk[inside].T)]
    return float(hits.mean())


def check_overlap(
    bold_path: str | os.PathLike,
    bold: nib.spatialimages.SpatialImage,
    t1_path: str | os.PathLike,
    t1: nib.spatialimages.SpatialImage,
    atlas_path: str | os.PathLike,
    atlas: nib.spatialimages.SpatialImage,
    labels: np.ndarray,
    min_overlap: float,
) -> dict[str, float]:
    """Require the BOLD, the T1 and the atlas to cover one another in world (mm) coordinates.

    Masks: the BOLD's and the T1's mean intensity above 20 % of its 98th
    percentile, the atlas's ``labels > 0``, each with holes filled along every
    axis. Voxel centres of one mask (up to 20000, strided) are mapped through
    the affines into the other image's grid and counted:

    - ``T1w``: the fraction of the BOLD mask inside the T1 mask (the BOLD
      brain must lie in the subject's head or brain);
    - ``atlas``: the fraction of the atlas's labelled extent inside the BOLD
      mask (the regions the ROI series average must have BOLD data under them;
      a partial field of view lowers it by the part it misses).

    Either below ``min_overlap`` raises an InputError naming both files and
    the fraction. 0 turns the check off; images with a spatial axis of 1 (a
    surface run in the volume contract) have no extent and are skipped.

    Returns
    -------
    dict
        ``{"T1w": fraction, "atlas": fraction}`` (empty when skipped).
    """
    images = (bold, t1, atlas)
    if not min_overlap or any(d < 2 for img in images for d in img.shape[:3]):
        return {}
    bold_affine = np.asarray(bold.affine, float)
    bold_mask = head_mask(np.asanyarray(bold.dataobj))
    t1_mask = head_mask(np.asanyarray(t1.dataobj))
    atlas_mask = _fill(np.asarray(labels) > 0)
    found = {
        "T1w": fraction_inside(
            _points(bold_mask, bold_affine), t1_mask, np.asarray(t1.affine, float)
        ),
        "atlas": fraction_inside(
            _points(atlas_mask, np.asarray(atlas.affine, float)), bold_mask, bold_affine
        ),
    }
    bold_shown, t1_shown, atlas_shown = (user_path(p) for p in (bold_path, t1_path, atlas_path))
    setting = f"(preprocess.min_overlap {min_overlap:g}): misregistered or in another space"
    if found["T1w"] < min_overlap:
        raise InputError(
            bold_shown,
            f"only {found['T1w']:.0%} of the BOLD brain extent lies inside the T1w "
            f"{t1_shown} in world coordinates {setting}",
        )
    if found["atlas"] < min_overlap:
        raise InputError(
            bold_shown,
            f"only {found['atlas']:.0%} of the atlas {atlas_shown} lies inside the BOLD "
            f"brain extent in world coordinates {setting}",
        )
    return found


# --------------------------------------------------------------------------- labels


def check_subject_label(subject: str, where: str | os.PathLike = "subject") -> str:
    """Return ``subject`` when it is ``sub-`` + alphanumerics; refuse path separators,
    ``..`` and anything else a BIDS label may not hold."""
    if not isinstance(subject, str) or not _LABEL.fullmatch(subject):
        raise InputError(
            where,
            f"subject {subject!r} is not a BIDS subject id (sub- followed by letters and digits)",
        )
    return subject


def check_safe_name(value: str, where: str | os.PathLike = "subject") -> str:
    """Refuse a name that could act as a path: separators, ``..``, control characters.

    For filter values that a source maps to a label itself (BraTS and ADNI take
    raw case names such as ``BraTS20_Training_001``); the ids the workflow uses
    pass :func:`check_subject_label`.
    """
    if not isinstance(value, str) or not value or any(c in value for c in "/\\\0") or ".." in value:
        raise InputError(
            where, f"subject {value!r} is not a BIDS subject id (no path separators or '..')"
        )
    if any(ord(c) < 32 for c in value):
        raise InputError(where, f"subject {value!r} holds control characters")
    return value
