"""The one reader of an atlas labels TSV (``atlas/labels.tsv``, or a user atlas's TSV).

Columns ``index`` (the label value in the atlas image), ``name``, then ``x``,
``y``, ``z`` (region centre, mm) and any extra columns (``hemisphere``,
``network`` ...). Written by :func:`modalmerge.data.parcellation.atlases.write_atlas`
and the synthetic generator; read by the atlas loaders, the parcellate stage and
the figures.
"""

from __future__ import annotations

import os

import pandas as pd

from modalmerge.io import InputError, require_file

COORDINATES = ("x", "y", "z")


def read_labels(path: str | os.PathLike, *, require_coordinates: bool = False) -> pd.DataFrame:
    """Read and check a labels TSV, rows in file order.

    Parameters
    ----------
    path : path-like
        The TSV.
    require_coordinates : bool
        Require ``x``, ``y``, ``z`` with a number in every row (the parcellate
        stage, whose ROI centres travel into the shards). Otherwise they may be
        absent, and when present must be numeric (``n/a`` allowed).

    Returns
    -------
    pandas.DataFrame
        ``index`` (int, positive, unique), ``name`` (str), then the other columns.

    Raises
    ------
    modalmerge.io.InputError
        An unreadable file, a missing column, bad indices or non-numeric coordinates.
    """
    path = require_file(path, "atlas labels TSV")
    try:
        table = pd.read_csv(path, sep="\t", na_values=["n/a"])
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(path, f"unreadable labels TSV ({exc})") from None
    required = ("index", "name", *COORDINATES) if require_coordinates else ("index", "name")
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InputError(path, f"labels TSV lacks column(s) {missing}")
    if not pd.api.types.is_integer_dtype(table["index"]) or (table["index"] <= 0).any():
        raise InputError(path, "labels TSV 'index' must hold positive integers")
    if table["index"].duplicated().any():
        raise InputError(path, "labels TSV has duplicate indices")
    coords = table[[c for c in COORDINATES if c in table.columns]]
    numeric = all(pd.api.types.is_numeric_dtype(coords[c]) for c in coords)
    if not numeric or (require_coordinates and coords.isna().any(axis=None)):
        raise InputError(path, "labels TSV coordinates x, y, z must be numbers")
    table["name"] = table["name"].astype(str)
    return table
