"""How preprocess splits a BOLD run so that its peak memory is bounded by ``preprocess.chunk_mb``.

Three passes touch the run (:mod:`modalmerge.data.preprocess`): volumes onto the atlas grid
(chunks of whole volumes), cleaning (chunks of voxels with all their time points, as
:func:`nilearn.signal.clean` needs) and writing (chunks of volumes again). In between, the
in-mask signals (V_mask x T, float32) live in memory when they fit in ``chunk_mb``, else in a
chunked HDF5 file in a scratch folder (``$TMPDIR``), deleted when the stage ends. A run that
fits in one chunk (the default synthetic runs) is processed exactly as a whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ChunkPlan"]

_MB = 2**20
_FLOAT64 = 8
#: float64 copies of a cleaning chunk alive at once inside nilearn.signal.clean with the
#: vectorised band-pass (the padded series, the forward and backward passes, the output):
#: the chunk is sized so that all of them fit in ``chunk_mb``.
_CLEAN_COPIES = 4


@dataclass(frozen=True)
class ChunkPlan:
    """Chunk sizes of one run.

    Attributes
    ----------
    volumes : int
        Volumes per chunk when resampling and writing: one chunk (float64) on the larger of
        the input and atlas grids holds at most ``chunk_mb``.
    voxels : int
        Voxels per cleaning chunk: the float64 copies of their whole series that cleaning
        holds at once (``_CLEAN_COPIES``) fit in ``chunk_mb``.
    in_memory : bool
        The in-mask signals (float32) fit in ``chunk_mb``: no scratch file.
    shape : tuple of int
        (V_mask, T), the in-mask signals.
    """

    volumes: int
    voxels: int
    in_memory: bool
    shape: tuple[int, int]

    @classmethod
    def for_run(
        cls, run_shape: tuple[int, ...], grid_shape: tuple[int, ...], n_mask: int, chunk_mb: float
    ) -> ChunkPlan:
        """The plan for a run of ``run_shape`` (X, Y, Z, T) onto an atlas grid of ``grid_shape``
        with ``n_mask`` labelled voxels, within ``chunk_mb`` MB per chunk."""
        n_volumes = int(run_shape[3])
        budget = float(chunk_mb) * _MB
        per_volume = max(int(np.prod(run_shape[:3])), int(np.prod(grid_shape))) * _FLOAT64
        return cls(
            volumes=max(1, min(n_volumes, int(budget // per_volume))),
            voxels=max(1, min(n_mask, int(budget // (n_volumes * _FLOAT64 * _CLEAN_COPIES)))),
            in_memory=n_mask * n_volumes * 4 <= budget,
            shape=(int(n_mask), n_volumes),
        )

    @contextmanager
    def signals(self, scratch: str | Path) -> Iterator:
        """An array-like (V_mask, T) float32 for the in-mask signals: a numpy array, or a dataset
        of an HDF5 file in ``scratch`` chunked for both access patterns (closed on exit)."""
        if self.in_memory:
            yield np.empty(self.shape, dtype=np.float32)
            return
        import h5py  # only long runs need it

        chunks = (min(self.shape[0], 16384), min(self.shape[1], 64))  # 4 MB
        with h5py.File(Path(scratch) / "signals.h5", "w", rdcc_nbytes=64 * _MB) as fh:
            yield fh.create_dataset("signals", shape=self.shape, dtype=np.float32, chunks=chunks)
