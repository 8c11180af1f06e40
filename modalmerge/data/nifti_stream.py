"""Read and write 4D NIfTI runs a chunk of volumes at a time.

A long run (HCP: 91 x 109 x 91 x 1200, 3.6 GB as float32) never sits whole in memory:
:func:`open_run` reads the header and then hands out consecutive volumes from one
sequential (ISA-L) gzip stream, checking each chunk as :func:`modalmerge.data.nifti.load_image`
checks a whole image (truncation, corrupt stream, NaN or infinite voxels; scaled to float32
exactly as it does); :func:`write_run` writes a float32 run volume by volume, with the
header and bytes that :func:`modalmerge.data.nifti.save_image` writes for the same array.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

from modalmerge.data.nifti import _GZIP_ERRORS, _gzip, parse_header
from modalmerge.io import InputError, atomic_path, require_file

__all__ = ["RunReader", "open_run", "write_run"]


class RunReader:
    """Consecutive volumes of an open 4D run (made by :func:`open_run`).

    Attributes
    ----------
    path : Path
    image : nibabel.Nifti1Image
        The run's header, affine and shape over a zero-byte placeholder array (for
        :func:`modalmerge.data.nifti.repetition_time` and grid checks): never read its data.
    shape : tuple of int
        (X, Y, Z, T).
    """

    def __init__(self, path: Path, stream, header, klass, what: str) -> None:
        self.path, self._stream, self._what = path, stream, what
        self._header = header
        self.shape = tuple(int(n) for n in header.get_data_shape())
        self._dtype = header.get_data_dtype()
        self._slope, self._inter = header.get_slope_inter()
        placeholder = np.broadcast_to(np.zeros((), np.float32), self.shape)
        image_header = header.copy()
        image_header.set_data_dtype(np.float32)
        image_header.set_slope_inter(None, None)
        self.image = klass(placeholder, header.get_best_affine(), header=image_header)
        self._next = 0

    @property
    def affine(self) -> np.ndarray:
        return self.image.affine

    def _read(self, n_bytes: int) -> bytearray:
        buf = bytearray(n_bytes)
        view, filled = memoryview(buf), 0
        try:
            while filled < n_bytes:
                n = self._stream.readinto(view[filled:])
                if not n:
                    break
                filled += n
        except _GZIP_ERRORS as exc:
            raise InputError(self.path, f"truncated or corrupt gzip stream ({exc})") from None
        finally:
            del view
        if filled < n_bytes:
            kind = "gzip stream" if self.path.name.endswith(".gz") else "file"
            raise InputError(
                self.path, f"truncated or corrupt {kind}: ended {n_bytes - filled} bytes early"
            )
        return buf

    def volumes(self, per_chunk: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first volume index, float32 array (X, Y, Z, t))`` for consecutive chunks of
        at most ``per_chunk`` volumes, from the start of the run, each read once."""
        if self._next:
            raise RuntimeError("a run's volumes can be read once")
        x, y, z, n_volumes = self.shape
        per_chunk = max(int(per_chunk), 1)
        for start in range(0, n_volumes, per_chunk):
            t = min(per_chunk, n_volumes - start)
            count = x * y * z * t
            raw = self._read(count * self._dtype.itemsize)
            data = np.frombuffer(raw, dtype=self._dtype, count=count).reshape(
                (x, y, z, t), order="F"
            )
            yield start, self._as_float32(data, start)
            self._next = start + t
        try:
            self._stream.read()  # to the end: a gzip stream checks its CRC there
        except _GZIP_ERRORS as exc:
            raise InputError(self.path, f"truncated or corrupt gzip stream ({exc})") from None

    def _as_float32(self, data: np.ndarray, start: int) -> np.ndarray:
        slope, inter = self._slope, self._inter
        if slope is not None and (slope != 1.0 or (inter or 0.0) != 0.0):
            data = data.astype(np.float32) * np.float32(slope) + np.float32(inter or 0.0)
        data = data.astype(np.float32, copy=False)
        finite = np.isfinite(data)
        if not finite.all():
            stop = start + data.shape[3] - 1
            raise InputError(
                self.path,
                f"{self._what} has {int(finite.size - np.count_nonzero(finite))} NaN or "
                f"infinite voxels in volumes {start}-{stop}",
            )
        return data


@contextmanager
def open_run(path: str | os.PathLike, what: str = "BOLD run") -> Iterator[RunReader]:
    """Open a 4D ``.nii``/``.nii.gz`` run for reading its volumes in order.

    Raises
    ------
    modalmerge.io.InputError
        Missing file, wrong suffix, unreadable header, not 4D (the message names the file);
        truncation, a corrupt stream and NaN voxels surface while reading volumes.
    """
    path = require_file(path, what)
    if not path.name.endswith((".nii", ".nii.gz")):
        raise InputError(path, f"{what} must be a .nii or .nii.gz file")
    gz = path.name.endswith(".gz")
    try:
        stream = _gzip.open(path, "rb") if gz else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise InputError(path, f"cannot open ({exc})") from None
    try:
        try:
            head = stream.read(540)
        except _GZIP_ERRORS as exc:
            raise InputError(path, f"truncated or corrupt gzip stream ({exc})") from None
        header, klass = parse_header(path, head)
        shape = header.get_data_shape()
        if len(shape) != 4:
            raise InputError(path, f"{what} must be 4D, got {len(shape)}D with shape {shape}")
        offset = int(header["vox_offset"])
        if offset < len(head):
            stream.seek(offset)
        else:
            stream.read(offset - len(head))
        yield RunReader(path, stream, header, klass, what)
    finally:
        stream.close()


def _run_header(affine: np.ndarray, shape: tuple[int, ...], tr: float) -> nib.Nifti1Header:
    """The header :func:`modalmerge.data.nifti.save_image` writes for a float32 run of
    ``shape`` (mm, seconds, TR in pixdim[4])."""
    image = nib.Nifti1Image(np.zeros((1, 1, 1, 1), np.float32), affine)
    image.header.set_xyzt_units("mm", "sec")
    image.update_header()
    header = image.header
    header.set_data_shape(shape)
    header.set_zooms((*header.get_zooms()[:3], tr))
    header.set_data_offset(352)  # single file: 348-byte header + 4-byte extension flag
    header.set_slope_inter(1.0, 0.0)
    return header


@contextmanager
def write_run(
    path: str | os.PathLike, affine: np.ndarray, shape: tuple[int, ...], tr: float
) -> Iterator[Callable[[np.ndarray], None]]:
    """Write a float32 4D run of ``shape`` to ``path`` (``.nii.gz``, atomically), volume chunk by
    volume chunk: yields ``write(volumes)`` taking arrays (X, Y, Z, t) in order; the file
    appears only when all ``shape[3]`` volumes were written."""
    path = Path(path)
    header = _run_header(np.asarray(affine), tuple(int(n) for n in shape), float(tr))
    written = [0]
    with atomic_path(path) as tmp:
        level = 1
        opener = (
            (lambda p: _gzip.open(p, "wb", compresslevel=level))
            if path.name.endswith(".gz")
            else (lambda p: open(p, "wb"))
        )  # noqa: SIM115
        with opener(tmp) as fh:
            header.write_to(fh)
            fh.write(b"\x00" * (352 - fh.tell()))

            def write(volumes: np.ndarray) -> None:
                if volumes.shape[:3] != tuple(shape[:3]):
                    raise ValueError(f"volumes {volumes.shape} do not match the run {shape}")
                block = np.asfortranarray(volumes, dtype=np.float32)
                fh.write(block.ravel(order="F").data)
                written[0] += block.shape[3]

            yield write
        if written[0] != shape[3]:
            raise ValueError(f"wrote {written[0]} of {shape[3]} volumes")
