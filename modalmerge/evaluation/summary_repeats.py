"""``eval/summary_repeats.csv``: every repeat's ``summary.csv`` gathered (``repeats: K``).

One row per (experiment, predictor or comparison, metric) of the first
repeat's summary, in its order::

    experiment,condition,target,method,model,metric,n_repeats,mean,sd,beats,n_verdicts

- ``mean``, ``sd``: mean and sample SD (``ddof=1``; empty for one repeat) of
  ``value`` across the ``n_repeats`` repeats that hold the row with a defined
  value (e.g. a PSNR of ``inf`` is undefined: empty in summary.csv).
- ``beats``: for comparison rows with a verdict (``model-<baseline>`` on the
  primary metric), in how many repeats the verdict was ``beats`` (the 95 %
  interval of the paired per-unit difference lay above zero); ``n_verdicts``
  the repeats with a verdict. Empty on other rows.

A row missing from a later repeat, or a repeat holding a row the first lacks,
is an error naming the file: the repeats run the same experiments.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path

from modalmerge.evaluation.intervals import BEATS
from modalmerge.evaluation.summary import IDENTITY_FIELDS, SUMMARY_COLUMNS, write_csv
from modalmerge.io import InputError, require_file

REPEATS_COLUMNS = (
    *(*IDENTITY_FIELDS, "model", "metric"),
    *("n_repeats", "mean", "sd", "beats", "n_verdicts"),
)
_KEY = (*IDENTITY_FIELDS, "model", "metric")


def read_summary(path: str | os.PathLike) -> dict[tuple, dict]:
    """One ``summary.csv`` as {(experiment, condition, target, method, model, metric): row}."""
    path = require_file(path, "summary.csv")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != SUMMARY_COLUMNS:
            raise InputError(path, f"columns {reader.fieldnames} are not {list(SUMMARY_COLUMNS)}")
        rows = {}
        for row in reader:
            key = tuple(row[c] for c in _KEY)
            if key in rows:
                raise InputError(path, f"row {key} appears twice")
            rows[key] = row
    if not rows:
        raise InputError(path, "has no rows")
    return rows


def _value(path: Path, key: tuple, text: str) -> float | None:
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError as err:
        raise InputError(path, f"value {text!r} of row {key} is not a number") from err
    return value if math.isfinite(value) else None


def _cell(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def repeat_rows(summaries: Sequence[str | os.PathLike]) -> list[list[str]]:
    """The ``summary_repeats.csv`` rows (module docstring) of the repeats' summaries."""
    if not summaries:
        raise ValueError("no summary.csv files to gather")
    paths = [Path(p) for p in summaries]
    tables = [read_summary(p) for p in paths]
    first = tables[0]
    for path, table in zip(paths[1:], tables[1:], strict=True):
        missing = [k for k in first if k not in table]
        extra = [k for k in table if k not in first]
        if missing or extra:
            what = f"lacks row {missing[0]}" if missing else f"has an extra row {extra[0]}"
            raise InputError(path, f"{what} of {paths[0]}: repeats must run the same experiments")
    out = []
    for key in first:
        values = [_value(p, key, t[key]["value"]) for p, t in zip(paths, tables, strict=True)]
        values = [v for v in values if v is not None]
        verdicts = [t[key]["verdict"] for t in tables if t[key]["verdict"]]
        mean = statistics.fmean(values) if values else None
        sd = statistics.stdev(values) if len(values) > 1 else None
        beats = [str(sum(v == BEATS for v in verdicts)), str(len(verdicts))] if verdicts else []
        out.append([*key, str(len(values)), _cell(mean), _cell(sd), *(beats or ["", ""])])
    return out


def summarize_repeats(summaries: Sequence[str | os.PathLike], out_csv: str | os.PathLike) -> Path:
    """Gather the repeats' ``summary.csv`` files (repeat 0 first) into ``out_csv``, atomically.

    Raises
    ------
    InputError
        A file is missing, has other columns, or other rows than the first.
    ValueError
        ``summaries`` is empty.
    """
    rows = repeat_rows(summaries)
    return write_csv(out_csv, REPEATS_COLUMNS, rows)
