"""Opening the shard files a manifest lists: clear errors, and no silent mix of versions.

Every reader of the shards (:class:`~modalmerge.data.shards.dataset.ShardDataset`,
:func:`~modalmerge.data.shards.split_arrays.load_split_arrays`) opens its files
here, so a missing, truncated or foreign file is an
:class:`~modalmerge.io.InputError` naming it, never a bare h5py ``OSError``.

The shard stage writes a new version of a shard directory beside the old one
and renames it into place (:func:`modalmerge.io.atomic_dir`): a reader that
already holds a file open keeps reading the old, complete version (on POSIX
an open file outlives its name). A reader that opens its files lazily (a
``DataLoader`` worker) records each file's identity when it reads the manifest
(:func:`file_identity`) and refuses, naming the file, one that was replaced
since, instead of mixing two versions of a split.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py

from modalmerge.data.shards.layout import FORMAT_VERSION
from modalmerge.io import InputError, require_file

__all__ = ["FileIdentity", "file_identity", "open_shard", "shard_paths"]

#: (inode, size, modification time in ns): changes when a file is replaced or rewritten
FileIdentity = tuple[int, int, int]


def file_identity(path: str | os.PathLike) -> FileIdentity:
    """``(inode, size, mtime_ns)`` of ``path``: what a reader compares before opening it."""
    stat = os.stat(path)
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def open_shard(path: str | os.PathLike, identity: FileIdentity | None = None) -> h5py.File:
    """Open one shard file read-only, checked.

    Parameters
    ----------
    path : path-like
        A ``{split}-NNNN.h5`` file named in the manifest.
    identity : tuple, optional
        The file's :func:`file_identity` when its manifest was read; a file
        that differs was replaced since (a new version of the shards).

    Raises
    ------
    modalmerge.io.InputError
        The file is missing, empty, not readable HDF5 (corrupt or truncated),
        of another format version, lacks the ``samples``/``subjects`` groups,
        or was replaced since the manifest was read.
    """
    path = require_file(path, "shard file named in the manifest")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(
            path, f"not a readable HDF5 shard file (corrupt or truncated: {exc})"
        ) from None
    version = h5.attrs.get("format_version")
    problem = None
    if identity is not None and _open_identity(h5) != tuple(identity):  # the file now open
        problem = (
            "shard file was replaced after its manifest was read (a new version of the shards "
            "was written meanwhile); build the dataset again to read the new version"
        )
    elif version != FORMAT_VERSION:
        problem = f"format_version {version}, this code reads {FORMAT_VERSION}"
    elif "samples" not in h5 or "subjects" not in h5:
        problem = "shard file lacks the samples/ or subjects/ group"
    if problem is not None:
        h5.close()
        raise InputError(path, problem)
    return h5


def _open_identity(h5: h5py.File) -> FileIdentity:
    """:func:`file_identity` of the file ``h5`` holds open (not of whatever its name is now)."""
    stat = os.fstat(h5.id.get_vfd_handle())
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def shard_paths(shard_dir: str | os.PathLike, manifest: dict, split: str) -> list[Path]:
    """The files of ``split`` in manifest order (the order of the split's samples)."""
    return [Path(shard_dir) / e["file"] for e in manifest["shards"] if e["split"] == split]
