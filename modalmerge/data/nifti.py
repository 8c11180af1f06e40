"""Load and save NIfTI images with clear errors and fast gzip decoding.

Every data stage loads its images through :func:`load_image`, so a missing,
truncated or corrupt file, an image of the wrong dimensionality or one holding
NaN/inf voxels fails in the first second with one line that names the file.

Decompression uses ``isal.igzip`` (Intel ISA-L, several times faster than
zlib) when it is installed and falls back to the standard library's ``gzip``.
The voxel array is then a zero-copy view of the decompressed buffer, in the
file's Fortran order (x fastest, time slowest), as ``nibabel.load`` gives it.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from modalmerge.io import InputError, atomic_path, require_file

try:  # ISA-L gzip: same API as the standard library's gzip module
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover - isal is a declared dependency
    _gzip = gzip

__all__ = [
    "GRID_ATOL_MM",
    "TR_RTOL",
    "check_same_grid",
    "grid_mismatch",
    "header_tr",
    "load_image",
    "load_labels",
    "repetition_time",
    "same_grid",
    "save_image",
]

#: Two images share a voxel grid when their 3D shapes are equal and their affines differ
#: by at most this many mm in any entry.
GRID_ATOL_MM = 1e-3
#: Relative disagreement allowed between two statements of a run's repetition time
#: (sidecar, header, configuration). 0.1 %: far above float32 storage in a header
#: (~1e-7) and a sidecar's rounding to the ms, far below a real mismatch (2.0 s against
#: 2.02 s, which 1 % would have let through and which shifts every filter frequency).
TR_RTOL = 1e-3

_GZIP_ERRORS = (OSError, EOFError, zlib.error, ValueError)


def _read_gz(path: Path) -> bytearray:
    """Decompress a whole .gz file into one writable buffer (no intermediate copies)."""
    with open(path, "rb") as raw:
        raw.seek(-4, os.SEEK_END)
        size_mod_4g = int.from_bytes(raw.read(4), "little")  # gzip ISIZE trailer
    try:
        with _gzip.open(path, "rb") as stream:
            buf = bytearray(size_mod_4g)
            view = memoryview(buf)
            filled = 0
            while filled < len(buf):
                n = stream.readinto(view[filled:])
                if not n:
                    break
                filled += n
            tail = stream.read()  # > 4 GiB files (ISIZE wraps) or a bad trailer
            del view
        if filled < len(buf):
            raise EOFError("stream shorter than its gzip trailer says")
        if tail:
            buf += tail
    except _GZIP_ERRORS as exc:
        raise InputError(path, f"truncated or corrupt gzip stream ({exc})") from None
    return buf


def _read_bytes(path: Path) -> bytearray:
    if path.name.endswith(".gz"):
        return _read_gz(path)
    buf = bytearray(path.stat().st_size)
    with open(path, "rb") as fh:
        fh.readinto(buf)
    return buf


def parse_header(path: Path, buf: bytes | bytearray):
    """The NIfTI-1 or -2 header at the start of ``buf`` and its image class (an InputError
    naming ``path`` when it is too short or unreadable)."""
    if len(buf) < 348:
        raise InputError(path, f"too short for a NIfTI header ({len(buf)} bytes)")
    try:
        sizeof_hdr = int.from_bytes(buf[:4], "little")
        if sizeof_hdr not in (348, 540):
            sizeof_hdr = int.from_bytes(buf[:4], "big")
        klass = nib.Nifti2Image if sizeof_hdr == 540 else nib.Nifti1Image
        header = klass.header_class.from_fileobj(io.BytesIO(bytes(buf[:540])))
    except Exception as exc:  # nibabel raises several types for a bad header
        raise InputError(path, f"not a readable NIfTI header ({exc})") from None
    return header, klass


def _image_from_buffer(path: Path, buf: bytearray) -> nib.Nifti1Image:
    """Build an in-memory image whose array is a view of ``buf`` (scaled if needed)."""
    header, klass = parse_header(path, buf)
    shape = header.get_data_shape()
    dtype = header.get_data_dtype()
    offset = int(header["vox_offset"])
    count = int(np.prod(shape, dtype=np.int64))
    needed = offset + count * dtype.itemsize
    if len(buf) < needed:
        raise InputError(path, f"truncated: {len(buf)} bytes, the header needs {needed}")
    data = np.frombuffer(buf, dtype=dtype, count=count, offset=offset).reshape(shape, order="F")
    slope, inter = header.get_slope_inter()
    if slope is not None and (slope != 1.0 or (inter or 0.0) != 0.0):
        data = data.astype(np.float32) * np.float32(slope) + np.float32(inter or 0.0)
    header = header.copy()
    header.set_data_dtype(data.dtype)
    header.set_slope_inter(None, None)
    return klass(data, header.get_best_affine(), header=header)


def load_image(
    path: str | os.PathLike,
    ndim: int | None = None,
    what: str = "image",
    dtype: type | None = np.float32,
    check_finite: bool = True,
) -> nib.Nifti1Image:
    """Load a NIfTI image fully into memory, validating it.

    Parameters
    ----------
    path : path-like
        ``.nii`` or ``.nii.gz`` file.
    ndim : {None, 3, 4}
        Required dimensionality. ``ndim=3`` accepts a 4D image with one volume
        (squeezed to 3D); ``ndim=4`` rejects a 3D image.
    what : str
        What the file is, for error messages (``"BOLD run"``, ``"atlas"``).
    dtype : numpy dtype or None
        Cast the voxel array to this type (default float32); ``None`` keeps the
        on-disk type (after scaling).
    check_finite : bool
        Reject images with NaN or infinite voxels.

    Returns
    -------
    nibabel.Nifti1Image
        Image whose ``dataobj`` is an ndarray of shape (X, Y, Z) or (X, Y, Z, T),
        Fortran-ordered as on disk; ``affine`` maps voxel indices to mm.

    Raises
    ------
    modalmerge.io.InputError
        Missing, empty, truncated or corrupt file; wrong dimensionality;
        non-finite voxels. The message names the file.
    """
    path = require_file(path, what)
    if not path.name.endswith((".nii", ".nii.gz")):
        raise InputError(path, f"{what} must be a .nii or .nii.gz file")
    img = _image_from_buffer(path, _read_bytes(path))
    data = np.asanyarray(img.dataobj)
    if ndim == 3 and data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    elif ndim is not None and data.ndim != ndim:
        raise InputError(
            path, f"{what} must be {ndim}D, got {data.ndim}D with shape {tuple(data.shape)}"
        )
    if dtype is not None and data.dtype != dtype:
        data = data.astype(dtype)
    if check_finite and data.dtype.kind == "f" and not np.isfinite(data).all():
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise InputError(path, f"{what} has {bad} NaN or infinite voxels")
    if data is not img.dataobj:
        header = img.header.copy()
        header.set_data_dtype(data.dtype)
        img = type(img)(data, img.affine, header=header)
    return img


def load_labels(path: str | os.PathLike, what: str = "atlas") -> tuple[nib.Nifti1Image, np.ndarray]:
    """Load a 3D integer label image (0 = background).

    Returns
    -------
    img : nibabel.Nifti1Image
        The image as stored.
    labels : ndarray of int32, shape (X, Y, Z)
        Integer labels; the file's values must be whole numbers >= 0.
    """
    img = load_image(path, ndim=3, what=what, dtype=None)
    data = np.asanyarray(img.dataobj)
    if data.dtype.kind == "f":
        rounded = np.rint(data)
        if not np.array_equal(rounded, data):
            raise InputError(path, f"{what} holds non-integer values")
        data = rounded
    if data.size and data.min() < 0:
        raise InputError(path, f"{what} holds negative labels")
    return img, data.astype(np.int32, copy=False)


def grid_mismatch(img: nib.Nifti1Image, reference: nib.Nifti1Image) -> str | None:
    """None when ``img`` lies on ``reference``'s voxel grid (3D shape equal, affine within
    :data:`GRID_ATOL_MM`), else what differs, in words."""
    if tuple(img.shape[:3]) != tuple(reference.shape[:3]):
        return f"grid {tuple(img.shape[:3])} does not match {tuple(reference.shape[:3])}"
    diff = float(np.abs(np.asarray(img.affine) - np.asarray(reference.affine)).max())
    if diff > GRID_ATOL_MM:
        return f"affine differs by up to {diff:.3g} mm"
    return None


def same_grid(a: nib.Nifti1Image, b: nib.Nifti1Image) -> bool:
    """True when two images share their voxel grid (see :func:`grid_mismatch`)."""
    return grid_mismatch(a, b) is None


def check_same_grid(
    img: nib.Nifti1Image,
    reference: nib.Nifti1Image,
    path: str | os.PathLike,
    what: str,
    reference_name: str = "the atlas grid",
    hint: str = "; run the preprocess stage first",
) -> None:
    """Raise InputError naming ``path`` when ``img`` is not on ``reference``'s grid."""
    problem = grid_mismatch(img, reference)
    if problem is not None:
        raise InputError(path, f"{what} is not on {reference_name}: {problem}{hint}")


def header_tr(img: nib.Nifti1Image) -> float | None:
    """Repetition time in seconds from a 4D header's pixdim[4], rounded to the microsecond
    (headers store float32); None when the header declares no time unit (``sec``,
    ``msec``, ``usec``), since pixdim[4] is then often a placeholder such as 1."""
    if len(img.shape) < 4:
        return None
    unit = img.header.get_xyzt_units()[1]
    value = float(img.header.get_zooms()[3])
    if value <= 0 or unit not in ("sec", "msec", "usec"):
        return None
    return round(value * {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}[unit], 6)


def repetition_time(
    bold_path: str | os.PathLike, img: nib.Nifti1Image, given: dict[str, object]
) -> float:
    """The repetition time of a BOLD run in seconds: the one reader every stage uses.

    Parameters
    ----------
    bold_path : path-like
        The run (named in errors).
    img : nibabel image
        Its header; :func:`header_tr` is added as the last statement.
    given : dict
        Statements by priority, ``{label: seconds or None}`` (``{"sidecar
        sub-01_bold.json": 2.0, "tr argument": None}``); None entries are absent.

    Returns
    -------
    float
        The first statement present; all must agree within :data:`TR_RTOL`.

    Raises
    ------
    modalmerge.io.InputError
        No statement, one that is not a positive number, or a disagreement.
    """
    statements: dict[str, float] = {}
    for label, value in given.items():
        if value is None:
            continue
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            message = f"repetition time {value!r} in {label} is not a number"
            raise InputError(bold_path, message) from None
        if not (np.isfinite(seconds) and seconds > 0):
            raise InputError(bold_path, f"repetition time {seconds:g} s in {label} is not positive")
        statements[label] = seconds
    head = header_tr(img)
    if head is not None:
        statements["the NIfTI header"] = head
    if not statements:
        raise InputError(
            bold_path, "no repetition time: no sidecar value and no time unit in the NIfTI header"
        )
    values = list(statements.values())
    if max(values) - min(values) > TR_RTOL * max(values):
        said = ", ".join(f"{v:g} s in {label}" for label, v in statements.items())
        raise InputError(bold_path, f"inconsistent repetition times: {said}")
    return values[0]


def save_image(img: nib.Nifti1Image, path: str | os.PathLike, compresslevel: int = 1) -> None:
    """Write ``img`` atomically; ``.nii.gz`` is compressed with ISA-L when available.

    Parameters
    ----------
    img : nibabel.Nifti1Image
        Image to write (its header's data type is used on disk).
    path : path-like
        Target ``.nii`` or ``.nii.gz`` file.
    compresslevel : int
        gzip level (ISA-L supports 0-3; 1 is fast and compresses NIfTI well).
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.name.endswith(".gz"):
            level = min(compresslevel, 3) if _gzip is not gzip else compresslevel
            with _gzip.open(tmp, "wb", compresslevel=level) as fh:
                img.to_stream(fh)
        else:
            nib.save(img, tmp)
