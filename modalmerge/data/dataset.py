"""Read the HDF5 shards: manifest validation, a lazy torch Dataset, whole-split arrays.

:class:`ShardDataset` opens its HDF5 files on first use in each process (so a
``DataLoader`` with workers forks before any handle exists), reads one sample
per ``__getitem__`` with plain integer indexing, and caches the small
subject-level arrays (tabular, text, structural features, connectivity) after
their first read. Images are read per sample (one chunk each) and not cached.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from modalmerge.data.shards import FORMAT_VERSION, SPLITS
from modalmerge.io import InputError, require_file

__all__ = [
    "MODALITIES",
    "ShardDataset",
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
        self._cache: dict[tuple[int, int, str], torch.Tensor] = {}
        self._datasets: dict[tuple[int, str], h5py.Dataset] = {}

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getstate__(self) -> dict:  # never pickle open handles into workers
        state = self.__dict__.copy()
        state["_handles"], state["_pid"], state["_datasets"] = None, None, {}
        return state

    def _open(self) -> list[h5py.File]:
        if self._handles is None or self._pid != os.getpid():
            self._handles = [h5py.File(self.shard_dir / f, "r") for f in self.files]
            self._pid = os.getpid()
            self._provenance, self._cache, self._datasets = {}, {}, {}
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

    def _modality(self, name: str, h5: h5py.File, fi: int, local: int, row: int) -> torch.Tensor:
        if name == "time_series":
            return torch.from_numpy(self._dataset(h5, fi, "samples/time_series")[local])
        if name == "image":
            return torch.from_numpy(self._dataset(h5, fi, "subjects/image")[row])
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

    def close(self) -> None:
        """Close the open HDF5 files (reopened on next access)."""
        for handle in self._handles or []:
            handle.close()
        self._handles = None


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
