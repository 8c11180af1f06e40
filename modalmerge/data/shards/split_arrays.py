"""The shards' manifest and whole-split arrays (for baselines, evaluation, tokenizers).

:func:`read_manifest` validates ``manifest.json``; :func:`load_split_arrays`
reads every row of one modality in one split at once, which baselines and
evaluation need and which is small at the subject level. Per-sample reads for
training go through :class:`modalmerge.data.shards.dataset.ShardDataset` instead.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from modalmerge.data.shards.files import open_shard
from modalmerge.data.shards.layout import FORMAT_VERSION
from modalmerge.io import InputError, require_file
from modalmerge.modalities import SHARD_MODALITIES, check_modality

__all__ = [
    "image_channels",
    "load_split_arrays",
    "read_manifest",
    "roi_columns",
    "roi_labels",
    "roi_names",
    "run_length",
    "split_texts",
    "table_columns",
    "tabular_schema",
]

_REQUIRED_KEYS = ("format_version", "config_hash", "splits", "shards", "shapes", "tabular")


def read_manifest(shard_dir: str | os.PathLike) -> dict:
    """Load and validate ``shard_dir/manifest.json``.

    Checks the format version, the required keys, that no subject sits in two
    splits (unless ``split_by`` is ``time``: then every split holds blocks of
    the same runs) and that every listed shard file exists.

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
    if manifest.get("split_by", "subject") not in ("subject", "time", "space", "site"):
        raise InputError(
            path, f"split_by {manifest['split_by']!r} is not subject, time, space or site"
        )
    by_time = manifest.get("split_by") == "time"  # blocks of each run: subjects in all splits
    for split, ids in ({} if by_time else manifest["splits"]).items():
        for sid in ids:
            if sid in seen:
                raise InputError(path, f"subject {sid} is in both {seen[sid]} and {split}")
            seen[sid] = split
    for entry in manifest["shards"]:
        require_file(Path(shard_dir) / entry["file"], f"{entry['split']} shard")
    return manifest


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

    Raises
    ------
    modalmerge.io.InputError
        A shard file the manifest names is missing, corrupt or truncated.
    """
    check_modality(modality, "requested modality", SHARD_MODALITIES)
    manifest = read_manifest(shard_dir)
    parts, subjects, starts = [], [], []
    for entry in manifest["shards"]:
        if entry["split"] != split:
            continue
        with open_shard(Path(shard_dir) / entry["file"]) as h5:
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


def run_length(shard_dir: str | os.PathLike, window: int) -> int:
    """Volumes from a run's start to the end of its last window in any split: the
    ``run_length`` of a time-series decoder's ``readout: run`` (window starts only, no
    series values, are read)."""
    manifest = read_manifest(shard_dir)
    last = -1
    for entry in manifest["shards"]:
        with open_shard(Path(shard_dir) / entry["file"]) as h5:
            if "samples/window_start" not in h5:
                raise InputError(
                    Path(shard_dir) / entry["file"],
                    "no samples/window_start: not time-series shards",
                )
            starts = h5["samples/window_start"][()]
        if len(starts):
            last = max(last, int(starts.max()))
    if last < 0:
        raise InputError(Path(shard_dir) / "manifest.json", "no time-series windows in any split")
    return last + int(window)


def split_texts(shard_dir: str | os.PathLike, split: str) -> list[str]:
    """The subject texts of one split (e.g. the training corpus of a tokenizer)."""
    return list(load_split_arrays(shard_dir, split, "text")["data"])


def tabular_schema(shard_dir: str | os.PathLike, selector=None) -> tuple[int, list[int]]:
    """``(n_numeric, categorical_cardinalities)`` of the shards' table (or of a column view).

    Cardinalities count the categories seen in the whole cohort's
    ``participants.tsv`` (stored in the manifest), so every split codes alike.
    ``selector``: a column view as in :func:`table_columns` (None: every column).
    """
    manifest = read_manifest(shard_dir)
    table = manifest["tabular"]
    columns = list(table["columns"])
    picked = table_columns(manifest, selector)
    if picked is not None:
        columns = [columns[i] for i in picked]
    categorical = [c for c in columns if c in set(table["categorical"])]
    return len(columns) - len(categorical), [len(table["categories"][c]) for c in categorical]


def table_columns(manifest: dict, selector, what: str = "column selector") -> np.ndarray | None:
    """Indices of the table columns a selector picks, numeric columns first.

    Parameters
    ----------
    manifest : dict
        From :func:`read_manifest` (``tabular.columns``, ``tabular.categorical``).
    selector : None, str or list
        None: every column (returns None). A string: a regular expression
        searched in each column name (``"^fc_"``). A list: column names in the
        order wanted. Picked numeric columns come before picked categorical
        ones (the order a model's table expects), each group in selector order.

    Raises
    ------
    ValueError
        The selector picks nothing, names an unknown column, or lists one twice.
    """
    if selector is None:
        return None
    columns = [str(c) for c in manifest["tabular"]["columns"]]
    if isinstance(selector, str):
        try:
            pattern = re.compile(selector)
        except re.error as exc:
            raise ValueError(f"{what} {selector!r} is not a regular expression ({exc})") from None
        picked = [i for i, name in enumerate(columns) if pattern.search(name)]
        if not picked:
            raise ValueError(f"{what} {selector!r} matches no column (columns: {columns[:6]} ...)")
    elif isinstance(selector, list | tuple) and selector:
        unknown = [c for c in selector if str(c) not in columns]
        if unknown:
            raise ValueError(f"{what}: no column named {unknown[:5]}")
        picked = [columns.index(str(c)) for c in selector]
        if len(set(picked)) != len(picked):
            raise ValueError(f"{what} lists a column twice")
    else:
        raise ValueError(f"{what} must be a regular expression or a non-empty list")
    categorical = set(manifest["tabular"].get("categorical", []))
    ordered = [i for i in picked if columns[i] not in categorical]
    ordered += [i for i in picked if columns[i] in categorical]
    return np.asarray(ordered, dtype=np.int64)


def roi_columns(manifest: dict, selector, what: str = "ROI selector") -> np.ndarray | None:
    """Column indices of the ROIs a selector picks from the shards' time series.

    Parameters
    ----------
    manifest : dict
        From :func:`read_manifest` (``roi_names``, ``roi_labels``).
    selector : None, str or list
        None: every ROI (returns None). A string: a regular expression searched
        in each ROI name (``"^L_"`` for the left hemisphere of the DK atlases; see
        ``atlas/labels.tsv`` for the names). A list: ROI names, or integer
        atlas labels, in the order wanted.

    Raises
    ------
    ValueError
        The selector picks nothing, names an unknown ROI, or the shards carry
        no ROI names and the selector needs them.
    """
    if selector is None:
        return None
    names = manifest.get("roi_names")
    labels = [int(v) for v in manifest.get("roi_labels", [])]
    if isinstance(selector, str):
        if not names:
            raise ValueError(f"{what} {selector!r} needs ROI names; the shards carry none")
        try:
            pattern = re.compile(selector)
        except re.error as exc:
            raise ValueError(f"{what} {selector!r} is not a regular expression ({exc})") from None
        picked = [i for i, name in enumerate(names) if pattern.search(str(name))]
        if not picked:
            raise ValueError(f"{what} {selector!r} matches no ROI (names: {names[:6]} ...)")
        return np.asarray(picked, dtype=np.int64)
    if not isinstance(selector, list | tuple) or not selector:
        raise ValueError(f"{what} must be a regular expression or a non-empty list")
    picked = []
    for item in selector:
        if isinstance(item, int) and not isinstance(item, bool) and item in labels:
            picked.append(labels.index(item))
        elif names and str(item) in names:
            picked.append(names.index(str(item)))
        else:
            raise ValueError(f"{what}: no ROI named or labelled {item!r}")
    if len(set(picked)) != len(picked):
        raise ValueError(f"{what} lists an ROI twice")
    return np.asarray(picked, dtype=np.int64)


def image_channels(manifest: dict, selector, what: str = "channel selector") -> np.ndarray | None:
    """Indices of the image channels a selector picks (None: every channel).

    ``selector``: a channel name, a list of names in the order wanted (names
    from the manifest's ``image_channels``: ``T1w`` first, then e.g. BraTS's
    ``ce-gd_T1w``, ``T2w``, ``FLAIR``, ``dseg``).
    """
    if selector is None:
        return None
    names = [str(c) for c in manifest.get("image_channels", ["T1w"])]
    wanted = [selector] if isinstance(selector, str) else list(selector)
    if not wanted:
        raise ValueError(f"{what} must name at least one channel")
    unknown = [c for c in wanted if str(c) not in names]
    if unknown:
        raise ValueError(f"{what}: no image channel {unknown} (channels: {names})")
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"{what} lists a channel twice")
    return np.asarray([names.index(str(c)) for c in wanted], dtype=np.int64)


def roi_labels(manifest: dict, columns: np.ndarray | None) -> np.ndarray:
    """Atlas labels (int64) of the selected ROI columns (all of them for None)."""
    labels = np.asarray(manifest.get("roi_labels", []), dtype=np.int64)
    return labels if columns is None else labels[columns]


def roi_names(manifest: dict, columns: np.ndarray | None) -> list[str]:
    """Names of the selected ROI columns (labels as strings when the shards carry no names)."""
    names = manifest.get("roi_names") or [str(v) for v in manifest.get("roi_labels", [])]
    return list(names) if columns is None else [str(names[i]) for i in columns]
