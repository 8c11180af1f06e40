"""Strict checks on real data: each fault is one line naming the file.

Every check raises :class:`modalmerge.io.InputError` (``"<file>: <fault>"``).
Header-level checks read only NIfTI headers, sidecars and tables, so they are
cheap; :func:`check_voxels` decodes the whole image (truncated gzip, NaN/inf).
:class:`ValidationCache` memoises the voxel checks on file size and mtime for
``on_error: exclude``, where planning the workflow must know the good subjects.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import zlib
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from modalmerge.data import checks
from modalmerge.data.nifti import repetition_time
from modalmerge.io import InputError, atomic_path, require_file


def load_header(path: Path, what: str = "image") -> nib.Nifti1Image:
    """Open a NIfTI image reading its header only.

    Raises
    ------
    InputError
        When the file is missing, empty or not a readable NIfTI.
    """
    require_file(path, what)
    try:
        img = nib.load(path)
    except Exception as err:  # nibabel raises many types for unreadable headers
        raise InputError(path, f"{what} is not a readable NIfTI ({type(err).__name__})") from None
    checks.check_header(path, img)  # dims x datatype against the file's size, plausible grid
    return img


def require_ndim(path: Path, img: nib.Nifti1Image, ndim: int, what: str) -> None:
    """Require a 3D image (a trailing axis of 1 is allowed) or a 4D one with > 1 volume."""
    shape = img.shape
    if ndim == 3 and (len(shape) == 3 or (len(shape) == 4 and shape[3] == 1)):
        return
    if ndim == 4 and len(shape) == 4 and shape[3] > 1:
        return
    raise InputError(path, f"{what} must be {ndim}D but has shape {tuple(shape)}")


#: The most bytes of voxel data :func:`check_voxels` holds at once (as float64).
CHUNK_BYTES = 256 * 2**20


def check_voxels(path: Path) -> None:
    """Decode the whole image: a truncated or corrupt file, or NaN/inf voxels, raise.

    A 4D image is read in blocks of volumes (``img.dataobj[..., i:j]``, one open
    file, read forward), so memory stays within :data:`CHUNK_BYTES` however long
    the run (an HCP run is about 4 GB as float32).

    Parameters
    ----------
    path : Path
        A ``.nii`` or ``.nii.gz`` image.
    """
    load_header(path)  # header sanity (dims x datatype vs the file's size) before any voxel
    img = nib.load(path, keep_file_open=True)  # gzip: each block continues the last
    shape = img.shape
    n = shape[3] if len(shape) == 4 else 1
    step = max(1, CHUNK_BYTES // (8 * int(np.prod(shape[:3], dtype=np.int64)) or 1))
    bad, scale, low, high = 0, 0.0, None, None
    try:
        for start in range(0, n, step):
            block = img.dataobj[..., start : start + step] if len(shape) == 4 else img.dataobj[...]
            data = np.asarray(block)
            if np.issubdtype(data.dtype, np.floating):
                bad += int(data.size - np.count_nonzero(np.isfinite(data)))
            if bad or data.ndim != 4 or data.size == 0:  # a constant 3D mask is fine
                continue
            scale = max(scale, float(np.max(np.abs(data))))
            lo, hi = data.min(axis=3), data.max(axis=3)
            low = lo if low is None else np.minimum(low, lo)
            high = hi if high is None else np.maximum(high, hi)
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError, ValueError) as err:
        raise InputError(path, f"truncated or corrupt image data ({type(err).__name__})") from None
    finally:
        opener = getattr(img.dataobj, "_opener", None)  # the file kept open for the blocks
        if opener is not None:
            opener.close_if_mine()
    if bad:
        raise InputError(path, f"{bad} voxel value(s) are NaN or inf")
    if low is not None:  # a run that never changes is caught here, against the user's file
        spread = float(np.max(high.astype(np.float64) - low))
        checks.check_temporal_range(path, spread, scale, n)


def check_tr(
    bold: Path, img: nib.Nifti1Image, sidecar_tr: float | None, sidecar: Path | None
) -> float:
    """The run's TR in seconds (:func:`modalmerge.data.nifti.repetition_time`: the sidecar's
    value first, checked against the header's); a sidecar that exists must state it (BIDS).

    Parameters
    ----------
    bold : Path
        The BOLD image (named in errors).
    img : nibabel image
        Its header.
    sidecar_tr : float or None
        ``RepetitionTime`` from the JSON sidecar (s), or None when absent.
    sidecar : Path or None
        The sidecar the value came from; when not None a value is required.
    """
    if sidecar is not None and sidecar_tr is None:
        raise InputError(bold, f"no RepetitionTime in sidecar {sidecar.name}")
    label = "sidecar" if sidecar is None else f"sidecar {Path(sidecar).name}"
    return repetition_time(bold, img, {label: sidecar_tr})


def check_confounds(path: Path, table: pd.DataFrame, n_volumes: int) -> pd.DataFrame:
    """Require a non-empty, numeric confounds table with one row per BOLD volume."""
    if table.shape[0] == 0 or table.shape[1] == 0:
        raise InputError(path, "confounds table is empty")
    if table.shape[0] != n_volumes:
        raise InputError(
            path, f"confounds have {table.shape[0]} rows but the BOLD has {n_volumes} volumes"
        )
    numeric = table.apply(pd.to_numeric, errors="coerce")
    text = [c for c in table if numeric[c].isna().sum() > table[c].isna().sum()]
    if text:
        raise InputError(path, f"confound column(s) {text[:3]} are not numeric")
    return numeric


def read_tsv(path: Path, what: str = "table") -> pd.DataFrame:
    """Read a BIDS TSV (``n/a`` is missing); an empty file raises."""
    require_file(path, what)
    try:
        return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise InputError(path, f"{what} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(path, f"{what} is not a valid TSV ({type(err).__name__})") from None


def check_space(path: Path, declared: str) -> None:
    """Require the file's BIDS ``space-`` entity to equal ``declared``."""
    found = re.search(r"_space-([A-Za-z0-9]+)_", Path(path).name)
    if found is None:
        raise InputError(path, f"has no space- entity; the config declares space {declared!r}")
    if found.group(1) != declared:
        raise InputError(
            path, f"is in space {found.group(1)!r} but the config declares {declared!r}"
        )


def participants_faults(
    listed: list[str], on_disk: list[str], where: str | Path
) -> list[tuple[str, InputError]]:
    """Duplicates, listed-but-missing and present-but-unlisted subjects.

    Parameters
    ----------
    listed : list of str
        ``participant_id`` values as the table lists them (after the filter).
    on_disk : list of str
        Subject ids with files in the layout (after the filter).
    where : str or Path
        The participants table (named in errors).

    Returns
    -------
    list of (subject, InputError)
        Empty when the table and the files agree.
    """
    faults: list[tuple[str, InputError]] = []
    for subject, n in sorted(Counter(listed).items()):
        if n > 1:
            faults.append(
                (subject, InputError(where, f"participant_id {subject} is listed {n} times"))
            )
    present = set(on_disk)
    for subject in sorted(set(listed) - present):
        faults.append(
            (subject, InputError(where, f"lists {subject} but the dataset has no files for it"))
        )
    for subject in sorted(present - set(listed)):
        faults.append((subject, InputError(where, f"does not list {subject}, which has files")))
    return faults


def _cache_dir(params: dict) -> Path:
    if params.get("validation_cache"):
        return Path(params["validation_cache"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "modalmerge" / "validation"


class ValidationCache:
    """Voxel-check results per subject, reused while the files keep their size and mtime.

    Stored as one JSON file per source configuration under
    ``params['validation_cache']`` (default ``$XDG_CACHE_HOME/modalmerge/validation``).
    """

    def __init__(self, params: dict):
        key = json.dumps(params, sort_keys=True, default=str)
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        self.path = _cache_dir(params) / f"{digest}.json"
        self.entries: dict[str, dict] = {}
        with contextlib.suppress(OSError, ValueError):
            self.entries = json.loads(self.path.read_text())
        self.changed = False

    @staticmethod
    def signature(images: list[Path]) -> list[list]:
        """``[path, size, mtime_ns]`` of each image (following symlinks)."""
        out = []
        for image in images:
            st = Path(image).stat()
            out.append([str(Path(image).resolve()), st.st_size, st.st_mtime_ns])
        return out

    def check(self, subject: str, images: list[Path]) -> str:
        """Run (or recall) :func:`check_voxels` on each image; '' when all pass, else the error."""
        signature = self.signature(images)
        entry = self.entries.get(subject)
        if entry is not None and entry["signature"] == signature:
            return entry["reason"]
        reason = ""
        for image in images:
            try:
                check_voxels(image)
            except InputError as err:
                reason = str(err)
                break
        self.entries[subject] = {"signature": signature, "reason": reason}
        self.changed = True
        return reason

    def save(self) -> None:
        """Write the cache atomically (silently skipped when the directory is not writable)."""
        if not self.changed:
            return
        with contextlib.suppress(OSError), atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.entries))
