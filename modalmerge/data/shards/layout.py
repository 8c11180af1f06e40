"""The layout every shard directory shares: the format version, the config hash, what each
HDF5 file starts with, the manifest's head, and the chunk placement of per-sample arrays
(subject shards, :mod:`modalmerge.data.shards.subjects`; region shards,
:mod:`modalmerge.data.shards.regions`)."""

from __future__ import annotations

import hashlib
import json

import h5py

from modalmerge.data.time_split import SPLITS

__all__ = ["FORMAT_VERSION", "config_hash", "manifest_head", "shard_file_head"]

FORMAT_VERSION = 1


def config_hash(params: dict) -> str:
    """SHA-256 (hex, first 16 chars) of the parameters as canonical JSON."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def shard_file_head(h5: h5py.File, split: str, chash: str, ids: list[str], table, table_attrs):
    """What every shard file starts with: the format attributes, the ``samples`` and
    ``subjects`` groups, the row ids, (empty) texts and the table; returns the two groups."""
    h5.attrs.update(format_version=FORMAT_VERSION, config_hash=chash, split=split)
    samples, rows = h5.create_group("samples"), h5.create_group("subjects")
    rows.create_dataset("id", data=ids, dtype=h5py.string_dtype())
    rows.create_dataset("text", (len(ids),), dtype=h5py.string_dtype())  # unwritten: ""
    rows.create_dataset("tabular", data=table).attrs.update(table_attrs)
    return samples, rows


def manifest_head(params: dict, chash: str, splits: dict, files: list[dict]) -> dict:
    """The manifest keys every shard directory has (format, parameters, splits, files)."""
    return {
        "format_version": FORMAT_VERSION,
        "config_hash": chash,
        "params": params,
        "splits": splits,
        "shards": files,
        "n_samples": {s: sum(f["n_samples"] for f in files if f["split"] == s) for s in SPLITS},
    }


def _contiguous_chunks() -> h5py.h5p.PropDCID:
    """Creation properties that place every chunk at creation, in order and
    uncompressed, so sample i is one byte range at a constant stride (what
    :mod:`modalmerge.data.shards.chunk_map` serves from a memmap); no fill pass."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    return dcpl
