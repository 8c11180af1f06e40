"""Read the HDF5 shards: manifest validation, a lazy torch Dataset, whole-split arrays.

:class:`ShardDataset` opens its HDF5 files on first use in each process (so a
``DataLoader`` with workers forks before any handle exists) and caches the
small subject-level arrays (tabular, text, structural features, connectivity)
after their first read. The per-sample arrays (time-series windows, images)
are uncompressed with one sample per chunk, so each chunk is one byte range of
the file: their offsets are read once per file and samples are served from a
read-only ``numpy.memmap`` (see :mod:`modalmerge.data.chunk_map`), falling
back to h5py reads where a dataset is compressed or not chunked that way.
``__getitems__`` (used by ``DataLoader``'s batched fetch) gathers a whole
batch at once; pass ``collate_fn=collate_samples`` to keep it stacked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from modalmerge.data.chunk_map import ChunkMap, map_chunks
from modalmerge.data.shards import FORMAT_VERSION, SPLITS
from modalmerge.io import InputError, require_file

__all__ = [
    "MODALITIES",
    "SampleBatch",
    "ShardDataset",
    "collate_samples",
    "load_split_arrays",
    "read_manifest",
    "split_texts",
    "tabular_schema",
]

MODALITIES = ("image", "time_series", "tabular", "text", "structural_features", "connectivity")
_SUBJECT_LEVEL = ("image", "tabular", "text", "structural_features", "connectivity")
_REQUIRED_KEYS = ("format_version", "config_hash", "splits", "shards", "shapes", "tabular")


def read_manifest(shard_dir: str | os.PathLike) -> dict:
    """Load and validate ``shard_dir/manifest.json``.

    Checks the format version, the required keys, that no subject sits in two
    splits and that every listed shard file exists.

    Raises
    ------
    modalmerge.io.InputError
        Missing or invalid manifest, or a missing shard file.
    """
    path = require_file(Path(shard_dir) / "manifest.json", "shard manifest")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON ({exc})") from None
    missing = [k for k in _REQUIRED_KEYS if k not in manifest]
    if missing:
        raise InputError(path, f"manifest lacks {missing}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise InputError(
            path, f"format_version {manifest['format_version']}, this code reads {FORMAT_VERSION}"
        )
    seen: dict[str, str] = {}
    for split, ids in manifest["splits"].items():
        for sid in ids:
            if sid in seen:
                raise InputError(path, f"subject {sid} is in both {seen[sid]} and {split}")
            seen[sid] = split
    for entry in manifest["shards"]:
        require_file(Path(shard_dir) / entry["file"], f"{entry['split']} shard")
    return manifest


def _check_modality(name: str, role: str) -> None:
    if name not in MODALITIES:
        raise ValueError(f"{role} modality {name!r} is not one of {MODALITIES}")


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
        ``structural_features`` (R, F) float32, ``connectivity`` (R, R) float32.
    tokenizer : object, optional
        Needed for ``text``: ``encode(text, max_length) -> list[int]``; ids are
        cut or padded with 0 to ``text_max_length``.
    text_max_length : int

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
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        _check_modality(condition, "condition")
        _check_modality(target, "target")
        if "text" in (condition, target) and tokenizer is None:
            raise ValueError("the text modality needs a tokenizer")
        self.shard_dir = Path(shard_dir)
        self.split, self.condition, self.target = split, condition, target
        self.tokenizer, self.text_max_length = tokenizer, text_max_length
        self.manifest = read_manifest(self.shard_dir)
        self.files = [e["file"] for e in self.manifest["shards"] if e["split"] == split]
        counts = [e["n_samples"] for e in self.manifest["shards"] if e["split"] == split]
        self._offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        self._handles: list[h5py.File] | None = None
        self._pid: int | None = None
        self._provenance: dict[int, tuple[np.ndarray, np.ndarray, list[str]]] = {}
        self._cache: dict[tuple[int, int, str], torch.Tensor | np.ndarray] = {}
        self._datasets: dict[tuple[int, str], h5py.Dataset] = {}
        self._maps: dict[tuple[int, str], ChunkMap | None] = {}

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getstate__(self) -> dict:  # never pickle open handles into workers
        state = self.__dict__.copy()
        state["_handles"], state["_pid"], state["_datasets"] = None, None, {}
        state["_maps"] = {}
        return state

    def _open(self) -> list[h5py.File]:
        if self._handles is None or self._pid != os.getpid():
            self._handles = [h5py.File(self.shard_dir / f, "r") for f in self.files]
            self._pid = os.getpid()
            self._provenance, self._cache, self._datasets = {}, {}, {}
            self._maps = {}
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
        key = "samples/time_series" if name == "time_series" else "subjects/image"
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
        if name in ("time_series", "image"):
            index = local if name == "time_series" else row
            return torch.from_numpy(self._per_sample(name, fi, np.array([index]))[0])
        return self._subject_level(name, h5, fi, row)

    def __getitem__(self, index: int) -> dict:
        h5, fi, local = self._locate(index)
        subject_index, window_start, ids = self._sample_info(fi, h5)
        row, start = int(subject_index[local]), int(window_start[local])
        return {
            "condition": self._modality(self.condition, h5, fi, local, row),
            "target": self._modality(self.target, h5, fi, local, row),
            "time_offset": torch.tensor(start, dtype=torch.long),
            "subject": ids[row],
            "window_start": start,
        }

    def _subject_rows(self, name: str, h5: h5py.File, fi: int, rows: np.ndarray) -> torch.Tensor:
        """(n, ...) tensor of a subject-level modality for subject rows of file ``fi``."""
        if name == "text":
            return torch.stack([self._subject_level(name, h5, fi, r) for r in rows.tolist()])
        key = (fi, -1, name)  # the whole (n_subjects, ...) array, read once
        if key not in self._cache:
            self._cache[key] = h5[f"subjects/{name}"][()]
        # numpy's gather: torch's indexing kernel spins up threads for a tiny copy
        return torch.from_numpy(self._cache[key][rows])

    def get_batch(self, indices) -> dict:
        """A collated batch: what ``default_collate([self[i] for i in indices])`` gives.

        Parameters
        ----------
        indices : sequence of int, length n

        Returns
        -------
        dict
            ``condition`` and ``target`` (n, ...) tensors, ``time_offset`` and
            ``window_start`` (n,) long tensors, ``subject`` (list of n str).
            Per-sample arrays are gathered per file in one vectorised copy.
        """
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        bad = index[(index < -n) | (index >= n)]
        if bad.size:
            raise IndexError(f"sample {int(bad[0])} out of range for {n} samples")
        index = index % max(n, 1)
        files = np.searchsorted(self._offsets, index, side="right") - 1
        handles = self._open()
        parts: dict[str, list] = {"condition": [], "target": []}
        starts = np.empty(len(index), dtype=np.int64)
        subjects: list = [None] * len(index)
        order = []
        for fi in np.unique(files).tolist():
            where = np.flatnonzero(files == fi)
            order.append(where)
            local = index[where] - self._offsets[fi]
            subject_index, window_start, ids = self._sample_info(fi, handles[fi])
            rows = subject_index[local]
            starts[where] = window_start[local]
            for j, row in zip(where.tolist(), rows.tolist(), strict=True):
                subjects[j] = ids[row]
            for role, name in (("condition", self.condition), ("target", self.target)):
                if name in ("time_series", "image"):
                    picked = local if name == "time_series" else rows
                    parts[role].append(torch.from_numpy(self._per_sample(name, fi, picked)))
                else:
                    parts[role].append(self._subject_rows(name, handles[fi], fi, rows))
        batch = {}
        for role, chunks in parts.items():
            if len(chunks) == 1:
                batch[role] = chunks[0]
            else:  # several files: put the rows back in the requested order
                merged = np.empty((len(index), *chunks[0].shape[1:]), dtype=chunks[0].numpy().dtype)
                for where, chunk in zip(order, chunks, strict=True):
                    merged[where] = chunk.numpy()
                batch[role] = torch.from_numpy(merged)
        offsets = torch.from_numpy(starts)
        batch.update(time_offset=offsets, subject=subjects, window_start=offsets.clone())
        return batch

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
        self._datasets, self._maps = {}, {}


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


def load_split_arrays(shard_dir: str | os.PathLike, split: str, modality: str) -> dict:
    """All arrays of one modality in one split, for baselines and evaluation.

    Parameters
    ----------
    shard_dir : path-like
    split : {"train", "val", "test"}
    modality : str
        ``time_series`` gives every window; the other modalities one row per
        subject (``text`` as a list of str).

    Returns
    -------
    dict
        ``data`` (ndarray (N, ...) or list of str), ``subject`` (list of str,
        per row) and ``window_start`` (int64 ndarray per row, time_series only;
        else None).
    """
    _check_modality(modality, "requested")
    manifest = read_manifest(shard_dir)
    parts, subjects, starts = [], [], []
    for entry in manifest["shards"]:
        if entry["split"] != split:
            continue
        with h5py.File(Path(shard_dir) / entry["file"], "r") as h5:
            ids = [s.decode() if isinstance(s, bytes) else s for s in h5["subjects/id"][()]]
            if modality == "time_series":
                index = h5["samples/subject_index"][()]
                parts.append(h5["samples/time_series"][()])
                subjects += [ids[i] for i in index]
                starts.append(h5["samples/window_start"][()])
            else:
                values = h5[f"subjects/{modality}"][()]
                if modality == "text":
                    values = [v.decode() if isinstance(v, bytes) else str(v) for v in values]
                parts.append(values)
                subjects += ids
    if modality == "text":
        data = [t for part in parts for t in part]
    elif parts:
        data = np.concatenate(parts)
    else:
        shape = manifest["shapes"].get(modality, [])
        data = np.zeros((0, *shape), dtype=np.float32)
    return {
        "data": data,
        "subject": subjects,
        "window_start": np.concatenate(starts) if starts else None,
    }


def split_texts(shard_dir: str | os.PathLike, split: str) -> list[str]:
    """The subject texts of one split (e.g. the training corpus of a tokenizer)."""
    return list(load_split_arrays(shard_dir, split, "text")["data"])


def tabular_schema(shard_dir: str | os.PathLike) -> tuple[int, list[int]]:
    """``(n_numeric, categorical_cardinalities)`` of the shards' table.

    Cardinalities count the categories seen in the whole cohort's
    ``participants.tsv`` (stored in the manifest), so every split codes alike.
    """
    manifest = read_manifest(shard_dir)
    table = manifest["tabular"]
    categorical = list(table["categorical"])
    n_numeric = len(table["columns"]) - len(categorical)
    return n_numeric, [len(table["categories"][c]) for c in categorical]
