"""A lazy torch Dataset over the HDF5 shards (whole-split arrays: :mod:`.split_arrays`).

:class:`ShardDataset` opens its HDF5 files on first use in each process (so a
``DataLoader`` with workers forks before any handle exists) and caches the
small subject-level arrays (tabular, text, structural features, connectivity)
after their first read. The per-sample arrays (time-series windows, images)
are uncompressed with one sample per chunk, so each chunk is one byte range of
the file: their offsets are read once per file and samples are served from a
read-only ``numpy.memmap`` (see :mod:`modalmerge.data.shards.chunk_map`), falling
back to h5py reads where a dataset is compressed or not chunked that way.
``__getitems__`` (used by ``DataLoader``'s batched fetch) gathers a whole
batch at once; pass ``collate_fn=collate_samples`` to keep it stacked.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from modalmerge.data.shards.chunk_map import ChunkMap, map_chunks
from modalmerge.data.shards.files import file_identity, open_shard
from modalmerge.data.shards.graphs import graph_source
from modalmerge.data.shards.split_arrays import (
    image_channels,
    read_manifest,
    roi_columns,
    table_columns,
)
from modalmerge.data.time_split import SPLITS
from modalmerge.io import InputError
from modalmerge.modalities import SHARD_MODALITIES, check_modality

__all__ = ["SampleBatch", "ShardDataset", "collate_samples"]

#: modalities stored per sample (window) or per subject in one-sample chunks, served from
#: memory maps: the HDF5 dataset of each
PER_SAMPLE = {
    "time_series": "samples/time_series",
    "volume_series": "samples/volume_series",
    "task_condition": "samples/task_condition",
    "image": "subjects/image",
}


@dataclass
class _SampleIndex:
    """Per-sample lookups over a split's files, each an int64 (N,) array but ``subject``."""

    file: np.ndarray  # shard file of the sample
    local: np.ndarray  # its row in that file's samples/*
    row: np.ndarray  # its subject's row in that file's subjects/*
    global_row: np.ndarray  # its subject's row among all subjects of the split
    start: np.ndarray  # window start (volumes)
    subject: np.ndarray  # object (N,): subject id
    readers: list  # (role, read(index) -> (n, ...) tensor) for condition and target


class ShardDataset(Dataset):
    """Samples (sliding windows) of one split as dicts of tensors.

    Parameters
    ----------
    shard_dir : path-like
        Directory holding ``manifest.json`` and the ``{split}-NNNN.h5`` files.
    split : {"train", "val", "test"}
    condition, target : str
        Modalities to return as ``"condition"`` and ``"target"``: ``image``
        (1, D, H, W) float32, ``time_series`` (window, R) float32, ``tabular``
        (n_columns,) float32, ``text`` (text_max_length,) long,
        ``structural_features`` (R, F) float32, ``connectivity`` (R, R) float32,
        ``graph`` (R, R) float32 (a graph with no node features: the view below).
        ``point_cloud`` (N, 3 + F) float32 (xyz mm, z-scored features; only in shards
        written with point clouds).
        ``volume_series`` (window, D, H, W) float32 and ``task_condition`` (window,)
        float32 codes (``shard.volume_series.enabled``; names in the manifest's
        ``volume_series.task_conditions``).
    tokenizer : object, optional
        Needed for ``text``: ``encode(text, max_length) -> list[int]``; ids are
        cut or padded with 0 to ``text_max_length``.
    text_max_length : int
    condition_rois, target_rois : str or list, optional
        ``time_series`` only: a view on a subset of the ROIs, in the order
        picked (a regular expression on ROI names, or a list of names or atlas
        labels; see :func:`modalmerge.data.shards.split_arrays.roi_columns`). Lets one
        modality condition another part of itself, e.g. left -> right hemisphere.
    condition_columns, target_columns : str or list, optional
        ``tabular`` only: a view on a subset of the table's columns (a regular
        expression on column names, or a list of names; numeric columns first,
        see :func:`modalmerge.data.shards.split_arrays.table_columns`), so one table
        can condition another part of itself, e.g. a region's structural
        profile -> its connectivity profile.
    condition_channels, target_channels : str or list, optional
        ``image`` only: the image channels to use, by name (the manifest's
        ``image_channels``: ``T1w`` first, then e.g. BraTS's ``ce-gd_T1w``,
        ``T2w``, ``FLAIR``, ``dseg``), so one subject's T1w can condition its
        FLAIR or its segmentation.
    condition_graph, target_graph : {"fc", "sc"}, optional
        ``graph`` only: the view read (default ``fc``, the connectivity; ``sc`` the
        structural connectome, :mod:`modalmerge.data.shards.graphs`).

    Each item also holds ``time_offset`` (long scalar tensor, window start in
    volumes), ``subject`` (str) and ``window_start`` (int).
    """

    def __init__(
        self,
        shard_dir: str | os.PathLike,
        split: str,
        condition: str,
        target: str,
        tokenizer=None,
        text_max_length: int = 32,
        condition_rois=None,
        target_rois=None,
        condition_columns=None,
        target_columns=None,
        condition_channels=None,
        target_channels=None,
        condition_graph=None,
        target_graph=None,
    ):
        # Over 60 lines: opens the manifest once and builds every index the per-item read needs.
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        check_modality(condition, "condition modality", SHARD_MODALITIES)
        check_modality(target, "target modality", SHARD_MODALITIES)
        if "text" in (condition, target) and tokenizer is None:
            raise ValueError("the text modality needs a tokenizer")
        self.shard_dir = Path(shard_dir)
        self.split, self.condition, self.target = split, condition, target
        self.tokenizer, self.text_max_length = tokenizer, text_max_length
        self.manifest = read_manifest(self.shard_dir)
        # the array each role reads: a graph reads one of its views (fc, sc)
        self.sources = {}
        for role, name, view in (
            ("condition", condition, condition_graph),
            ("target", target, target_graph),
        ):
            if view is not None and name != "graph":
                raise ValueError(f"{role}_graph applies to graph, not {name!r}")
            self.sources[role] = graph_source(view) if name == "graph" else name
        # column view per role (None: all): ROIs of a time series, columns of a table
        # image channels (axis -4 of a (C, D, H, W) image) or the last axis for the others
        self.columns: dict[str, torch.Tensor | None] = {}
        self.axes = {role: -4 if name == "image" else -1 for role, name in (
            ("condition", condition), ("target", target))}  # fmt: skip
        for role, name, rois, table, channels in (
            ("condition", condition, condition_rois, condition_columns, condition_channels),
            ("target", target, target_rois, target_columns, target_channels),
        ):
            if rois is not None and name != "time_series":
                raise ValueError(f"{role}_rois applies to time_series, not {name!r}")
            if table is not None and name != "tabular":
                raise ValueError(f"{role}_columns applies to tabular, not {name!r}")
            if channels is not None and name != "image":
                raise ValueError(f"{role}_channels applies to image, not {name!r}")
            if name == "tabular":
                columns = table_columns(self.manifest, table, f"{role}_columns")
            elif name == "image":
                columns = image_channels(self.manifest, channels, f"{role}_channels")
            else:
                columns = roi_columns(self.manifest, rois, f"{role}_rois")
            self.columns[role] = None if columns is None else torch.from_numpy(columns)
        held = self.manifest["shapes"]
        for role, name in self.sources.items():
            if name in (
                *PER_SAMPLE,
                "structural_features",
                "connectivity",
                "graph_sc",
                "graph_mpc",
                "point_cloud",
            ) and (name not in held):
                raise ValueError(
                    f"the {role} {name!r} is not in these shards (they hold {sorted(held)}; "
                    "anatomy-only data has no time series, region data only a table (and sub-graphs "
                    "with shard.subgraph_nodes); point clouds "
                    "need dataset.params.surface_points; volume series and task conditions need "
                    "shard.volume_series.enabled)"
                )
        self.files = [e["file"] for e in self.manifest["shards"] if e["split"] == split]
        counts = [e["n_samples"] for e in self.manifest["shards"] if e["split"] == split]
        # each file as the manifest found it: a worker refuses one replaced since (files.py)
        self._identity = [file_identity(self.shard_dir / f) for f in self.files]
        self._offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        self._handles: list[h5py.File] | None = None
        self._pid: int | None = None
        self._provenance: dict[int, tuple[np.ndarray, np.ndarray, list[str]]] = {}
        self._cache: dict[tuple[int, int, str], torch.Tensor | np.ndarray] = {}
        self._datasets: dict[tuple[int, str], h5py.Dataset] = {}
        self._maps: dict[tuple[int, str], ChunkMap | None] = {}
        self._index: _SampleIndex | None = None

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getstate__(self) -> dict:  # never pickle open handles into workers
        state = self.__dict__.copy()
        state["_handles"], state["_pid"], state["_datasets"] = None, None, {}
        state["_maps"], state["_index"] = {}, None
        return state

    def _open(self) -> list[h5py.File]:
        if self._handles is None or self._pid != os.getpid():
            handles: list[h5py.File] = []
            try:
                for name, identity in zip(self.files, self._identity, strict=True):
                    handles.append(open_shard(self.shard_dir / name, identity))
            except BaseException:
                for handle in handles:
                    handle.close()
                raise
            self._handles = handles
            self._pid = os.getpid()
            self._provenance, self._cache, self._datasets = {}, {}, {}
            self._maps, self._index = {}, None
        return self._handles

    def _locate(self, index: int) -> tuple[h5py.File, int, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        index %= len(self)
        file_index = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return self._open()[file_index], file_index, index - int(self._offsets[file_index])

    def _sample_info(self, file_index: int, h5: h5py.File) -> tuple:
        if file_index not in self._provenance:  # small per-file arrays, read once
            self._provenance[file_index] = (
                h5["samples/subject_index"][()],
                h5["samples/window_start"][()],
                [s.decode() if isinstance(s, bytes) else s for s in h5["subjects/id"][()]],
            )
        return self._provenance[file_index]

    def _dataset(self, h5: h5py.File, fi: int, key: str) -> h5py.Dataset:
        # h5py's path lookup costs more than a small read: keep the Dataset objects
        if (fi, key) not in self._datasets:
            self._datasets[fi, key] = h5[key]
        return self._datasets[fi, key]

    def _chunk_map(self, fi: int, key: str) -> ChunkMap | None:
        if (fi, key) not in self._maps:  # None: read this dataset through h5py
            self._maps[fi, key] = map_chunks(self._dataset(self._open()[fi], fi, key))
        return self._maps[fi, key]

    def _per_sample(self, name: str, fi: int, rows: np.ndarray) -> np.ndarray:
        """(n, ...) array of a per-sample modality for local sample/subject rows."""
        key = PER_SAMPLE[name]
        chunk_map = self._chunk_map(fi, key)
        if chunk_map is not None:
            return chunk_map.take(rows)
        dataset = self._dataset(self._open()[fi], fi, key)
        return np.stack([dataset[int(r)] for r in rows])

    def _subject_level(self, name: str, h5: h5py.File, fi: int, row: int) -> torch.Tensor:
        key = (fi, row, name)
        if key not in self._cache:
            if name == "text":
                text = h5["subjects/text"][row]
                text = text.decode() if isinstance(text, bytes) else str(text)
                ids = list(self.tokenizer.encode(text, self.text_max_length))
                ids = ids[: self.text_max_length]
                ids += [0] * (self.text_max_length - len(ids))
                self._cache[key] = torch.tensor(ids, dtype=torch.long)
            else:
                self._cache[key] = torch.from_numpy(h5[f"subjects/{name}"][row])
        return self._cache[key]

    def _modality(self, name: str, h5: h5py.File, fi: int, local: int, row: int) -> torch.Tensor:
        if name in PER_SAMPLE:
            index = row if name == "image" else local
            return torch.from_numpy(self._per_sample(name, fi, np.array([index]))[0])
        return self._subject_level(name, h5, fi, row)

    def __getitem__(self, index: int) -> dict:
        h5, fi, local = self._locate(index)
        subject_index, window_start, ids = self._sample_info(fi, h5)
        row, start = int(subject_index[local]), int(window_start[local])
        return {
            "condition": _select(
                self._modality(self.sources["condition"], h5, fi, local, row),
                self.columns["condition"],
                self.axes["condition"],
            ),
            "target": _select(
                self._modality(self.sources["target"], h5, fi, local, row),
                self.columns["target"],
                self.axes["target"],
            ),
            "time_offset": torch.tensor(start, dtype=torch.long),
            "subject": ids[row],
            "window_start": start,
        }

    def _global_index(self) -> _SampleIndex:
        """Per-sample lookup arrays over all files of the split, built once per process."""
        handles = self._open()  # a new process (or reopened files) starts afresh
        if self._index is None:
            files, local, rows, global_rows, starts, ids_all = [], [], [], [], [], []
            for fi, h5 in enumerate(handles):
                subject_index, window_start, ids = self._sample_info(fi, h5)
                n = len(subject_index)
                files.append(np.full(n, fi, dtype=np.int64))
                local.append(np.arange(n, dtype=np.int64))
                rows.append(subject_index.astype(np.int64))
                global_rows.append(subject_index.astype(np.int64) + len(ids_all))
                starts.append(window_start.astype(np.int64))
                ids_all += ids
            if sum(len(x) for x in files) != len(self):
                raise InputError(
                    self.shard_dir / "manifest.json", "n_samples disagree with the shard files"
                )

            def cat(parts: list) -> np.ndarray:
                return np.concatenate(parts) if parts else np.zeros(0, np.int64)

            global_row = cat(global_rows)
            lookup = _SampleIndex(
                file=cat(files),
                local=cat(local),
                row=cat(rows),
                global_row=global_row,
                start=cat(starts),
                subject=np.array(ids_all, dtype=object)[global_row],
                readers=[],
            )
            self._index = lookup  # readers below may look it up
            lookup.readers.extend(
                (role, _view(self._reader(name, lookup), self.columns[role], self.axes[role]))
                for role, name in self.sources.items()
            )
        return self._index

    def _reader(self, name: str, lookup: _SampleIndex):
        """``read(index) -> (n, ...) tensor`` of one modality for global sample indices."""
        if name == "text":
            handles = self._open()

            def read_text(index: np.ndarray) -> torch.Tensor:
                files, rows = lookup.file[index].tolist(), lookup.row[index].tolist()
                return torch.stack(
                    [
                        self._subject_level(name, handles[f], f, r)
                        for f, r in zip(files, rows, strict=True)
                    ]
                )

            return read_text
        if name in PER_SAMPLE:
            rows = lookup.row if name == "image" else lookup.local
            key = PER_SAMPLE[name]
            chunk_map = self._chunk_map(0, key) if len(self.files) == 1 else None
            if chunk_map is not None and chunk_map.array is not None and name != "image":
                return _strided_reader(chunk_map.array)  # one file: sample index = row
            return lambda index: torch.from_numpy(
                self._per_sample_rows(name, lookup.file[index], rows[index])
            )
        # numpy's gather (np.take beats fancy indexing): torch's indexing kernel spins up
        # threads for a tiny copy
        table, rows = self._subject_table(name), lookup.global_row
        return lambda index: torch.from_numpy(table.take(rows.take(index), axis=0))

    def _per_sample_rows(self, name: str, files: np.ndarray, picked: np.ndarray) -> np.ndarray:
        """(n, ...) per-sample array for (file, local row) pairs, in the given order."""
        if len(self.files) == 1:
            return self._per_sample(name, 0, picked)
        out = None
        for fi in np.unique(files).tolist():
            where = np.flatnonzero(files == fi)
            part = self._per_sample(name, fi, picked[where])
            if out is None:
                out = np.empty((len(files), *part.shape[1:]), dtype=part.dtype)
            out[where] = part
        return out

    def _subject_table(self, name: str) -> np.ndarray:
        """(all subjects of the split, ...) array of a subject-level modality, read once."""
        key = (-1, -1, name)
        if key not in self._cache:
            parts = [h5[f"subjects/{name}"][()] for h5 in self._open()]
            self._cache[key] = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return self._cache[key]

    def get_batch(self, indices) -> dict:
        """A collated batch: what ``default_collate([self[i] for i in indices])`` gives.

        Parameters
        ----------
        indices : sequence of int, length n
            Sample indices; negative ones count from the end.

        Returns
        -------
        dict
            ``condition`` and ``target`` (n, ...) tensors, ``time_offset`` and
            ``window_start`` (n,) long tensors, ``subject`` (list of n str).
            Every lookup (file, row, subject, window start) is a numpy gather
            from arrays built once per process; per-sample arrays are gathered
            per file in one vectorised copy of the memory map.

        Raises
        ------
        IndexError
            An index outside ``[-len(self), len(self))``.
        """
        if isinstance(indices, list):  # what DataLoader passes; fromiter is the fastest
            index = np.fromiter(indices, np.int64, len(indices))
        else:
            index = np.asarray(indices, dtype=np.int64).reshape(-1)
        lookup = self._index if self._pid == os.getpid() else None
        if lookup is None:
            lookup = self._global_index()
        try:
            starts = lookup.start.take(index)  # numpy checks the bounds (negatives wrap)
        except IndexError:
            bad = index[(index < -len(self)) | (index >= len(self))]
            raise IndexError(f"sample {int(bad[0])} out of range for {len(self)} samples") from None
        (role_a, read_a), (role_b, read_b) = lookup.readers
        return {
            role_a: read_a(index),
            role_b: read_b(index),
            "time_offset": torch.from_numpy(starts),
            "subject": lookup.subject.take(index).tolist(),
            "window_start": torch.from_numpy(starts.copy()),  # cheaper than Tensor.clone
        }

    def __getitems__(self, indices: list[int]) -> SampleBatch:
        """The samples ``indices`` as a :class:`SampleBatch` (a sequence of item dicts).

        ``torch.utils.data.DataLoader`` calls this for each batch when the
        dataset defines it. With ``collate_fn=collate_samples`` the batch
        gathered by :meth:`get_batch` is returned as is; the default collate
        also works (it rebuilds and restacks the items, which is slower).
        """
        return SampleBatch(self.get_batch(indices))

    def close(self) -> None:
        """Close the open HDF5 files (reopened on next access)."""
        for handle in self._handles or []:
            handle.close()
        self._handles = None
        self._datasets, self._maps, self._index = {}, {}, None


def _select(x: torch.Tensor, columns: torch.Tensor | None, axis: int = -1) -> torch.Tensor:
    """The ``columns`` along ``axis`` (ROIs of a window, columns of a table row, channels of
    an image at axis -4); all for None."""
    return x if columns is None else x.index_select(axis, columns)


def _view(read, columns: torch.Tensor | None, axis: int = -1):
    """``read`` restricted to ``columns`` along ``axis`` of its batches."""
    if columns is None:
        return read
    return lambda rows: _select(read(rows), columns, axis)


def _strided_reader(array: np.ndarray):
    """``read(index) -> tensor`` gathering rows of a read-only strided memory-map view.

    With more than one torch thread (the main process; DataLoader workers get
    one) the gather is ``torch.index_select``, which splits the copy over the
    threads (1.5x faster with 2 threads on a batch of 32 windows); with one
    thread it is ``numpy.take``, a little faster than ``index_select`` there.
    Negative indices wrap in both.
    """
    with warnings.catch_warnings():  # the view is never written through
        warnings.filterwarnings("ignore", message=".*not writ", category=UserWarning)
        tensor = torch.from_numpy(array)
    n = len(array)

    def read(index: np.ndarray) -> torch.Tensor:
        if torch.get_num_threads() > 1:
            return tensor.index_select(0, torch.from_numpy(index % n))
        return torch.from_numpy(array.take(index, axis=0))

    return read


class SampleBatch(Sequence):
    """A collated batch that also reads as the list of its item dicts.

    Parameters
    ----------
    batch : dict
        As :meth:`ShardDataset.get_batch` returns it.
    """

    def __init__(self, batch: dict):
        self.batch = batch
        self._items: list[dict] | None = None

    def __len__(self) -> int:
        return len(self.batch["subject"])

    def __getitem__(self, j):
        if self._items is None:  # built once, from one unbind per tensor
            b = self.batch
            self._items = [
                {
                    "condition": condition,
                    "target": target,
                    "time_offset": offset,
                    "subject": subject,
                    "window_start": start,
                }
                for condition, target, offset, subject, start in zip(
                    b["condition"].unbind(0),
                    b["target"].unbind(0),
                    b["time_offset"].clone().unbind(0),
                    b["subject"],
                    b["window_start"].tolist(),
                    strict=True,
                )
            ]
        return self._items[j]


def collate_samples(samples) -> dict:
    """``collate_fn`` for a DataLoader over :class:`ShardDataset`.

    Returns a :class:`SampleBatch`'s gathered batch directly; any other list
    of samples goes through ``torch.utils.data.default_collate``.
    """
    if isinstance(samples, SampleBatch):
        return samples.batch
    return default_collate(samples)
