"""The tabular view of the subject shards: ``participants.tsv`` read into numeric and coded
categorical columns, numeric columns z-scored on the training subjects, and each
subject's site."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from modalmerge.io import InputError, require_file

__all__ = ["read_participants", "subject_sites"]


def subject_sites(table: pd.DataFrame, categories: dict, where) -> dict[str, str]:
    """Each participant's site from :func:`read_participants`' table (``site`` column)."""
    if "site" not in table.columns:
        raise InputError(where, "has no site column (needed by split_by site / harmonize)")
    codes = table["site"]
    if "site" in categories:
        return {s: categories["site"][int(c)] for s, c in codes.items()}
    return {s: f"{c:g}" for s, c in codes.items()}


def read_participants(path: str | os.PathLike) -> tuple[pd.DataFrame, list[str], dict]:
    """Read ``participants.tsv`` into numeric-then-categorical float columns.

    Returns
    -------
    table : pandas.DataFrame
        Indexed by participant_id; numeric columns as read, categorical ones as
        integer codes (float), numeric columns first.
    categorical : list of str
        Names of the categorical (coded) columns.
    categories : dict
        ``{column: [category names in code order]}``.
    """
    path = require_file(path, "participants TSV")
    try:
        table = pd.read_csv(path, sep="\t", na_values=["n/a"], dtype={"participant_id": str})
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(path, f"unreadable participants TSV ({exc})") from None
    if "participant_id" not in table.columns:
        raise InputError(path, "participants TSV lacks a participant_id column")
    table = table.set_index("participant_id")
    if table.index.duplicated().any():
        raise InputError(path, "participants TSV lists a participant twice")
    table = table.dropna(axis=1, how="all")  # a column no subject fills carries nothing
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
    categorical = [c for c in table.columns if c not in numeric]
    if table.isna().any(axis=None):
        bad = table.columns[table.isna().any()].tolist()
        raise InputError(path, f"missing values (n/a or NaN) in column(s) {bad}")
    categories = {}
    for column in categorical:
        names = sorted(table[column].astype(str).unique())
        categories[column] = names
        table[column] = table[column].astype(str).map({n: i for i, n in enumerate(names)})
    return table[numeric + categorical].astype(np.float32), categorical, categories


def _standardize_numeric(
    tabular: pd.DataFrame, categorical: list[str], train_subjects: list[str]
) -> tuple[pd.DataFrame, dict]:
    """Z-score the table's numeric columns with the TRAINING subjects' mean and SD.

    Models then see (and predict) ages and scores on a unit scale whatever their
    units; the statistics go into the manifest, so values can be mapped back.
    Test subjects never inform them.
    """
    numeric = [c for c in tabular.columns if c not in categorical]
    train = tabular.loc[train_subjects, numeric]
    mean = train.mean()
    std = train.std(ddof=0).replace(0.0, 1.0).fillna(1.0)
    out = tabular.copy()
    out[numeric] = ((tabular[numeric] - mean) / std).astype(np.float32)
    stats = {
        "numeric_mean": [float(v) for v in mean],
        "numeric_std": [float(v) for v in std],
    }
    return out, stats
